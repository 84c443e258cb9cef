package dev.edgecnn.demo;

import android.graphics.Bitmap;
import android.os.Build;
import dev.edgecnn.core.BenchmarkReport;
import dev.edgecnn.core.Catalog;
import dev.edgecnn.core.Preprocessor;
import dev.edgecnn.core.SelfTest;
import dev.edgecnn.core.TopK;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Benchmark mode: every bundled model file, N timed runs on the golden image after a warm-up, with the
 * chosen threads and delegate; writes benchmark.json into the app's external files folder
 * (`adb pull /sdcard/Android/data/dev.edgecnn.demo/files/benchmark.json`, then `edgecnn app-report`).
 */
final class BenchmarkRunner {
    interface Progress {
        void update(String message);
    }

    static final String FILE_NAME = "benchmark.json";
    static final double TIE_TOLERANCE = 1e-3;

    private final AssetStore store;

    BenchmarkRunner(AssetStore store) {
        this.store = store;
    }

    File run(Catalog catalog, int threads, Classifier.Delegate delegate, int runs, int warmup, File folder,
             Progress progress) throws IOException {
        Bitmap golden = store.goldenImage(catalog);
        int[] argb = AssetStore.pixels(golden);
        BenchmarkReport report = new BenchmarkReport();
        report.device.manufacturer = Build.MANUFACTURER;
        report.device.model = Build.MODEL;
        report.device.android = Build.VERSION.RELEASE;
        report.device.sdk = Build.VERSION.SDK_INT;
        report.device.abi = Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "unknown";
        Catalog.GoldenImage image = catalog.golden.selfTestImage();
        report.image = image.file;
        report.runs = runs;
        report.warmup = warmup;
        int done = 0;
        List<Catalog.ModelFile> modelFiles = catalog.modelFiles();
        for (Catalog.ModelFile modelFile : modelFiles) {
            progress.update("benchmark " + (++done) + "/" + modelFiles.size() + ": " + modelFile.key);
            BenchmarkReport.Entry entry = BenchmarkReport.Entry.of(modelFile, delegate.name(), threads);
            try (Classifier classifier = new Classifier(store, modelFile, threads, delegate)) {
                entry.loadMs = classifier.loadMs;
                ByteBuffer input = Preprocessor.inputTensor(modelFile, argb, golden.getWidth(), golden.getHeight());
                long t = System.nanoTime();
                ByteBuffer raw = classifier.runRaw(input);
                entry.firstRunMs = (System.nanoTime() - t) / 1e6;
                float[] logits = TopK.logits(modelFile.output, raw, modelFile.variant.numClasses);
                List<TopK.Prediction> top = TopK.top(logits, 5, classifier.labels);
                for (int i = 1; i < warmup; i++) {
                    classifier.runRaw(input);
                }
                entry.latencyMs = new double[runs];
                for (int i = 0; i < runs; i++) {
                    long start = System.nanoTime();
                    classifier.runRaw(input);
                    entry.latencyMs[i] = (System.nanoTime() - start) / 1e6;
                }
                entry.summarize();
                entry.top5 = new int[top.size()];
                for (int i = 0; i < top.size(); i++) {
                    entry.top5[i] = top.get(i).index;
                }
                Catalog.GoldenResult expected = catalog.golden.forKey(modelFile.key, image.name);
                SelfTest.Result check = expected == null ? null : SelfTest.compare(top, expected, TIE_TOLERANCE);
                entry.matchesPython = check != null && check.passed;
                entry.selfTest = check == null ? "no golden result for this model file" : check.message;
            } catch (IOException | RuntimeException e) {
                entry.error = e.getMessage();  // e.g. a GPU that cannot run this graph: recorded, the rest go on
            }
            report.results.add(entry);
        }
        File target = new File(folder, FILE_NAME);
        File partial = new File(folder, FILE_NAME + ".partial");
        try (Writer writer = new OutputStreamWriter(new FileOutputStream(partial), StandardCharsets.UTF_8)) {
            writer.write(report.toJson());
        }
        if (!partial.renameTo(target)) {
            throw new IOException("cannot move " + partial + " to " + target);
        }
        return target;
    }
}
