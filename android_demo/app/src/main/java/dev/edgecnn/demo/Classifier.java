package dev.edgecnn.demo;

import dev.edgecnn.core.Catalog;
import dev.edgecnn.core.Preprocessor;
import dev.edgecnn.core.TopK;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * One bundled model in its runtime (LiteRT for a .tflite, ExecuTorch for a .pte): threads and, for LiteRT,
 * the delegate chosen by the user. Preprocessing, ranking and timing are the same for both.
 */
final class Classifier implements Closeable {
    enum Delegate { CPU_XNNPACK, GPU }

    static final class Result {
        final List<TopK.Prediction> top;
        final double preprocessMs;
        final double inferenceMs;

        Result(List<TopK.Prediction> top, double preprocessMs, double inferenceMs) {
            this.top = top;
            this.preprocessMs = preprocessMs;
            this.inferenceMs = inferenceMs;
        }
    }

    final Catalog.ModelFile modelFile;
    final List<String> labels;
    final double loadMs;
    private final Engine engine;

    /** What runs one inference: an input tensor in the catalog's layout in, the raw output out. */
    interface Engine extends Closeable {
        /** The returned buffer (native order) may be reused by the next call. */
        ByteBuffer run(ByteBuffer input);

        @Override
        void close();
    }

    Classifier(AssetStore store, Catalog.ModelFile modelFile, int threads, Delegate delegate) throws IOException {
        long start = System.nanoTime();
        this.modelFile = modelFile;
        this.labels = store.labels(modelFile);
        if (modelFile.isExecuTorch()) {
            if (delegate == Delegate.GPU) {
                throw new IOException(".pte files run on the CPU (XNNPACK) in this app; choose CPU for "
                        + modelFile.key);
            }
            engine = new ExecuTorchEngine(store.file(modelFile), modelFile, threads);
        } else {
            engine = new LiteRtEngine(store.model(modelFile), modelFile, threads, delegate == Delegate.GPU);
        }
        loadMs = (System.nanoTime() - start) / 1e6;
    }

    static boolean gpuAvailable() {
        return LiteRtEngine.gpuAvailable();
    }

    Result classify(int[] argb, int width, int height, int k) {
        long t0 = System.nanoTime();
        ByteBuffer input = Preprocessor.inputTensor(modelFile, argb, width, height);
        long t1 = System.nanoTime();
        ByteBuffer raw = runRaw(input);
        long t2 = System.nanoTime();
        float[] logits = TopK.logits(modelFile.output, raw, modelFile.variant.numClasses);
        List<TopK.Prediction> top = TopK.top(logits, k, labels);
        return new Result(top, (t1 - t0) / 1e6, (t2 - t1) / 1e6);
    }

    /** One inference on a ready input tensor; the returned buffer is reused by the next call. */
    ByteBuffer runRaw(ByteBuffer input) {
        input.rewind();
        ByteBuffer output = engine.run(input);
        output.rewind();
        return output;
    }

    @Override
    public void close() {
        engine.close();
    }
}
