package org.tensorflow.lite.gpu;

import java.io.Closeable;

/** Compile-only declaration (see ../../../../README.md). */
public class CompatibilityList implements Closeable {
    public CompatibilityList() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public boolean isDelegateSupportedOnThisDevice() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
