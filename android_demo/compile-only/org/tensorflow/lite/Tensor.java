package org.tensorflow.lite;

/** Compile-only declaration (see ../../../README.md). */
public interface Tensor {
    DataType dataType();

    int numDimensions();

    int numBytes();

    int numElements();

    int[] shape();

    String name();

    QuantizationParams quantizationParams();

    class QuantizationParams {
        public QuantizationParams(float scale, int zeroPoint) {
            throw new UnsupportedOperationException("compile-only declaration");
        }

        public float getScale() {
            throw new UnsupportedOperationException("compile-only declaration");
        }

        public int getZeroPoint() {
            throw new UnsupportedOperationException("compile-only declaration");
        }
    }
}
