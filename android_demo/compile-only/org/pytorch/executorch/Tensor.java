package org.pytorch.executorch;

import java.nio.ByteBuffer;
import java.nio.FloatBuffer;

/** Compile-only declaration (see ../../../README.md). */
public abstract class Tensor {
    /** int8 tensor over a direct buffer in native order, not copied. */
    public static Tensor fromBlob(ByteBuffer data, long[] shape) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    /** float32 tensor over a direct buffer in native order, not copied. */
    public static Tensor fromBlob(FloatBuffer data, long[] shape) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public abstract DType dtype();

    public long[] shape() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public byte[] getDataAsByteArray() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public float[] getDataAsFloatArray() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
