package dev.edgecnn.demo;

import dev.edgecnn.core.Catalog;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.util.Arrays;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;

/** A .tflite in a LiteRT interpreter, on XNNPACK or the GPU delegate. */
final class LiteRtEngine implements Classifier.Engine {
    private final Interpreter interpreter;
    private final GpuDelegate gpu;
    private final ByteBuffer output;

    LiteRtEngine(MappedByteBuffer model, Catalog.ModelFile modelFile, int threads, boolean useGpu) throws IOException {
        Interpreter.Options options = new Interpreter.Options().setNumThreads(threads);
        if (useGpu) {
            if (!gpuAvailable()) {
                throw new IOException("this phone's GPU is not supported by LiteRT's GPU delegate");
            }
            gpu = new GpuDelegate();
            options.addDelegate(gpu);
        } else {
            gpu = null;
            options.setUseXNNPACK(true);
        }
        interpreter = new Interpreter(model, options);
        check(interpreter.getInputTensor(0), modelFile.input, "input");
        check(interpreter.getOutputTensor(0), modelFile.output, "output");
        output = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder());
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
        if (tensor.dataType() != expected || !Arrays.equals(tensor.shape(), spec.shape)) {
            throw new IOException(which + " is " + tensor.dataType() + " " + Arrays.toString(tensor.shape())
                    + ", the catalog says " + spec.dtype + " " + Arrays.toString(spec.shape));
        }
        if (expected == DataType.INT8) {
            Tensor.QuantizationParams q = tensor.quantizationParams();
            if (q.getZeroPoint() != spec.zeroPoint || Math.abs(q.getScale() - spec.scale) > 1e-6f * spec.scale) {
                throw new IOException(which + " quantization differs from the catalog's");
            }
        }
    }

    @Override
    public ByteBuffer run(ByteBuffer input) {
        output.rewind();
        interpreter.run(input, output);
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
