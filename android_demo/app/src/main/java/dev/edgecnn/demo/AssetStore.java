package dev.edgecnn.demo;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import dev.edgecnn.core.Catalog;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** What `make android-assets` put into the APK: the catalog, label files, models and the golden files. */
final class AssetStore {
    private final AssetManager assets;
    private final File cache;

    AssetStore(AssetManager assets, File cache) {
        this.assets = assets;
        this.cache = cache;
    }

    Catalog catalog() throws IOException {
        return Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
    }

    List<String> labels(Catalog.ModelFile modelFile) throws IOException {
        List<String> labels = new ArrayList<>();
        for (String line : new String(read(modelFile.variant.labels), StandardCharsets.UTF_8).split("\n")) {
            if (!line.isEmpty()) {
                labels.add(line);
            }
        }
        return labels;
    }

    /** The model, memory-mapped from the APK (stored uncompressed: see app/build.gradle). */
    MappedByteBuffer model(Catalog.ModelFile modelFile) throws IOException {
        AssetFileDescriptor descriptor = assets.openFd(modelFile.file);
        try (FileInputStream stream = new FileInputStream(descriptor.getFileDescriptor())) {
            FileChannel channel = stream.getChannel();
            return channel.map(FileChannel.MapMode.READ_ONLY, descriptor.getStartOffset(), descriptor.getDeclaredLength());
        } finally {
            descriptor.close();
        }
    }

    /**
     * The model as a file (ExecuTorch loads from a path): copied from the APK into the cache once, and
     * copied again whenever the cached file is not the catalog's (its sha256 differs). Written to a
     * temporary name and renamed, so that a copy cut short is never loaded.
     */
    File file(Catalog.ModelFile modelFile) throws IOException {
        File target = new File(new File(cache, "models"), modelFile.file.replace('/', '_'));
        if (target.isFile() && modelFile.sha256.equals(sha256(target))) {
            return target;
        }
        File folder = target.getParentFile();
        if (!folder.isDirectory() && !folder.mkdirs()) {
            throw new IOException("cannot create " + folder);
        }
        File partial = new File(folder, target.getName() + ".partial");
        try (InputStream in = assets.open(modelFile.file); FileOutputStream out = new FileOutputStream(partial)) {
            byte[] chunk = new byte[1 << 16];
            int n;
            while ((n = in.read(chunk)) > 0) {
                out.write(chunk, 0, n);
            }
        }
        if (!modelFile.sha256.equals(sha256(partial))) {
            partial.delete();
            throw new IOException(modelFile.file + " in the APK is not the file the catalog lists");
        }
        if (!partial.renameTo(target)) {
            throw new IOException("cannot rename " + partial + " to " + target);
        }
        return target;
    }

    private static String sha256(File file) throws IOException {
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IOException(e);
        }
        try (InputStream in = new FileInputStream(file)) {
            byte[] chunk = new byte[1 << 16];
            int n;
            while ((n = in.read(chunk)) > 0) {
                digest.update(chunk, 0, n);
            }
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : digest.digest()) {
            hex.append(String.format("%02x", b));
        }
        return hex.toString();
    }

    /** The golden image the self-test and the benchmark run. */
    Bitmap goldenImage(Catalog catalog) throws IOException {
        String file = catalog.golden.selfTestImage().file;
        try (InputStream stream = assets.open(file)) {
            BitmapFactory.Options options = new BitmapFactory.Options();
            options.inPreferredConfig = Bitmap.Config.ARGB_8888;
            options.inScaled = false;
            Bitmap bitmap = BitmapFactory.decodeStream(stream, null, options);
            if (bitmap == null) {
                throw new IOException("cannot decode " + file);
            }
            return bitmap;
        }
    }

    byte[] read(String path) throws IOException {
        try (InputStream stream = assets.open(path)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] chunk = new byte[1 << 16];
            int n;
            while ((n = stream.read(chunk)) > 0) {
                out.write(chunk, 0, n);
            }
            return out.toByteArray();
        }
    }

    static int[] pixels(Bitmap bitmap) {
        int[] argb = new int[bitmap.getWidth() * bitmap.getHeight()];
        bitmap.getPixels(argb, 0, bitmap.getWidth(), 0, 0, bitmap.getWidth(), bitmap.getHeight());
        return argb;
    }
}
