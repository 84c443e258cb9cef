package dev.edgecnn.demo;

import dev.edgecnn.core.Catalog;
import dev.edgecnn.core.Preprocessor;
import dev.edgecnn.core.TopK;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;

/** One bundled model in a LiteRT interpreter: threads and delegate chosen by the user. */
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

    final Catalog.Variant variant;
    final List<String> labels;
    final double loadMs;
    private final Interpreter interpreter;
    private final GpuDelegate gpu;
    private final ByteBuffer output;

    Classifier(AssetStore store, Catalog.Variant variant, int threads, Delegate delegate) throws IOException {
        long start = System.nanoTime();
        this.variant = variant;
        this.labels = store.labels(variant);
        Interpreter.Options options = new Interpreter.Options().setNumThreads(threads);
        if (delegate == Delegate.GPU) {
            if (!gpuAvailable()) {
                throw new IOException("this phone's GPU is not supported by LiteRT's GPU delegate");
            }
            gpu = new GpuDelegate();
            options.addDelegate(gpu);
        } else {
            gpu = null;
            options.setUseXNNPACK(true);
        }
        interpreter = new Interpreter(store.model(variant), options);
        check(interpreter.getInputTensor(0), variant.input, "input");
        check(interpreter.getOutputTensor(0), variant.output, "output");
        output = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder());
        loadMs = (System.nanoTime() - start) / 1e6;
    }

    static boolean gpuAvailable() {
        CompatibilityList list = new CompatibilityList();
        try {
            return list.isDelegateSupportedOnThisDevice();
        } finally {
            list.close();
        }
    }

    /** The catalog must describe the file that was loaded: a stale asset would give wrong numbers silently. */
    private static void check(Tensor tensor, Catalog.TensorSpec spec, String which) throws IOException {
        DataType expected = "int8".equals(spec.dtype) ? DataType.INT8 : DataType.FLOAT32;
        if (tensor.dataType() != expected || !java.util.Arrays.equals(tensor.shape(), spec.shape)) {
            throw new IOException(which + " is " + tensor.dataType() + " " + java.util.Arrays.toString(tensor.shape())
                    + ", the catalog says " + spec.dtype + " " + java.util.Arrays.toString(spec.shape));
        }
        if (expected == DataType.INT8) {
            Tensor.QuantizationParams q = tensor.quantizationParams();
            if (q.getZeroPoint() != spec.zeroPoint || Math.abs(q.getScale() - spec.scale) > 1e-6f * spec.scale) {
                throw new IOException(which + " quantization differs from the catalog's");
            }
        }
    }

    Result classify(int[] argb, int width, int height, int k) {
        long t0 = System.nanoTime();
        ByteBuffer input = Preprocessor.inputTensor(variant, argb, width, height);
        long t1 = System.nanoTime();
        ByteBuffer raw = runRaw(input);
        long t2 = System.nanoTime();
        List<TopK.Prediction> top = TopK.top(TopK.logits(variant.output, raw, variant.numClasses), k, labels);
        return new Result(top, (t1 - t0) / 1e6, (t2 - t1) / 1e6);
    }

    /** One inference on a ready input tensor; the returned buffer is reused by the next call. */
    ByteBuffer runRaw(ByteBuffer input) {
        input.rewind();
        output.rewind();
        interpreter.run(input, output);
        output.rewind();
        return output;
    }

    @Override
    public void close() {
        interpreter.close();
        if (gpu != null) {
            gpu.close();
        }
    }
}
