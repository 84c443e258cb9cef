package dev.edgecnn.demo;

import dev.edgecnn.core.Catalog;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.pytorch.executorch.DType;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * A .pte in an ExecuTorch Module (XNNPACK inside the file), memory-mapped from the app's cache, where the
 * asset is copied because ExecuTorch loads from a path. The program's I/O is checked against the catalog on
 * a first run at load, since the Java API exposes no tensor metadata.
 */
final class ExecuTorchEngine implements Classifier.Engine {
    private final Module module;
    private final Catalog.ModelFile modelFile;
    private final long[] inputShape;
    private final ByteBuffer output;

    ExecuTorchEngine(File program, Catalog.ModelFile modelFile, int threads) throws IOException {
        this.modelFile = modelFile;
        module = Module.load(program.getAbsolutePath(), Module.LOAD_MODE_MMAP, threads);
        inputShape = new long[modelFile.input.shape.length];
        for (int i = 0; i < inputShape.length; i++) {
            inputShape[i] = modelFile.input.shape[i];
        }
        int classes = modelFile.output.shape[modelFile.output.shape.length - 1];
        boolean int8 = "int8".equals(modelFile.output.dtype);
        output = ByteBuffer.allocateDirect(int8 ? classes : 4 * classes).order(ByteOrder.nativeOrder());
        int elements = modelFile.variant.resolution * modelFile.variant.resolution * 3;
        ByteBuffer zeros = ByteBuffer.allocateDirect(modelFile.isInt8() ? elements : 4 * elements)
                .order(ByteOrder.nativeOrder());
        Tensor result = forward(zeros);
        DType expected = int8 ? DType.INT8 : DType.FLOAT;
        if (result.dtype() != expected || !Arrays.equals(result.shape(), new long[]{1, classes})) {
            module.destroy();
            throw new IOException("output is " + result.dtype() + " " + Arrays.toString(result.shape())
                    + ", the catalog says " + modelFile.output.dtype + " " + Arrays.toString(modelFile.output.shape));
        }
    }

    private Tensor forward(ByteBuffer input) {
        input.rewind();
        Tensor tensor = modelFile.isInt8() ? Tensor.fromBlob(input, inputShape)
                : Tensor.fromBlob(input.asFloatBuffer(), inputShape);
        EValue[] outputs = module.forward(EValue.from(tensor));
        return outputs[0].toTensor();
    }

    @Override
    public ByteBuffer run(ByteBuffer input) {
        Tensor result = forward(input);
        output.rewind();
        if ("int8".equals(modelFile.output.dtype)) {
            output.put(result.getDataAsByteArray());
        } else {
            output.asFloatBuffer().put(result.getDataAsFloatArray());
        }
        output.rewind();
        return output;
    }

    @Override
    public void close() {
        module.destroy();
    }
}
