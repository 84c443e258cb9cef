package org.pytorch.executorch;

/** Compile-only declaration (see ../../../README.md). */
public class EValue {
    private EValue() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public static EValue from(Tensor tensor) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public Tensor toTensor() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
