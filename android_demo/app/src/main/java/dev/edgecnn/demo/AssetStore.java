package dev.edgecnn.demo;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import dev.edgecnn.core.Catalog;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
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

    AssetStore(AssetManager assets) {
        this.assets = assets;
    }

    Catalog catalog() throws IOException {
        return Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
    }

    List<String> labels(Catalog.Variant variant) throws IOException {
        List<String> labels = new ArrayList<>();
        for (String line : new String(read(variant.labels), StandardCharsets.UTF_8).split("\n")) {
            if (!line.isEmpty()) {
                labels.add(line);
            }
        }
        return labels;
    }

    /** The model, memory-mapped from the APK (stored uncompressed: see app/build.gradle). */
    MappedByteBuffer model(Catalog.Variant variant) throws IOException {
        AssetFileDescriptor descriptor = assets.openFd(variant.file);
        try (FileInputStream stream = new FileInputStream(descriptor.getFileDescriptor())) {
            FileChannel channel = stream.getChannel();
            return channel.map(FileChannel.MapMode.READ_ONLY, descriptor.getStartOffset(), descriptor.getDeclaredLength());
        } finally {
            descriptor.close();
        }
    }

    Bitmap goldenImage(Catalog catalog) throws IOException {
        try (InputStream stream = assets.open(catalog.golden.image)) {
            BitmapFactory.Options options = new BitmapFactory.Options();
            options.inPreferredConfig = Bitmap.Config.ARGB_8888;
            options.inScaled = false;
            Bitmap bitmap = BitmapFactory.decodeStream(stream, null, options);
            if (bitmap == null) {
                throw new IOException("cannot decode " + catalog.golden.image);
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
