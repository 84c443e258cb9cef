package dev.edgecnn.core;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * The Java side of tests/test_preprocess_languages.py: reads images (little-endian int32 width, int32 height,
 * float64 crop fraction, then RGB bytes row by row) and prints, for each image and each resolution from the first to the last, the
 * sha256 of the preprocessed bytes, one hex line each.
 */
public final class PreprocessorBytes {
    private PreprocessorBytes() {
    }

    public static void main(String[] args) throws IOException, NoSuchAlgorithmException {
        int first = Integer.parseInt(args[1]);
        int last = Integer.parseInt(args[2]);
        StringBuilder out = new StringBuilder();
        try (DataInputStream in = new DataInputStream(new FileInputStream(args[0]))) {
            byte[] header = new byte[16];
            while (true) {
                try {
                    in.readFully(header);
                } catch (EOFException end) {
                    break;
                }
                ByteBuffer sizes = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
                int width = sizes.getInt();
                int height = sizes.getInt();
                double cropFraction = sizes.getDouble();
                byte[] rgb = new byte[width * height * 3];
                in.readFully(rgb);
                int[] argb = new int[width * height];
                for (int i = 0; i < argb.length; i++) {
                    argb[i] = 0xff000000 | (rgb[3 * i] & 0xff) << 16 | (rgb[3 * i + 1] & 0xff) << 8 | (rgb[3 * i + 2] & 0xff);
                }
                for (int resolution = first; resolution <= last; resolution++) {
                    int[] values = Preprocessor.rgb(argb, width, height, resolution, cropFraction);
                    byte[] bytes = new byte[values.length];
                    for (int i = 0; i < values.length; i++) {
                        bytes[i] = (byte) values[i];
                    }
                    for (byte b : MessageDigest.getInstance("SHA-256").digest(bytes)) {
                        out.append(String.format("%02x", b));
                    }
                    out.append('\n');
                }
            }
        }
        System.out.print(out);
    }
}
