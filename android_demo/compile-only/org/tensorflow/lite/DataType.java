package org.tensorflow.lite;

/** Compile-only declaration (see ../../../README.md). */
public enum DataType {
    FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8;

    public int byteSize() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
