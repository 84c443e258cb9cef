package org.tensorflow.lite.gpu;

import java.io.Closeable;
import org.tensorflow.lite.Delegate;

/** Compile-only declaration (see ../../../../README.md). */
public class GpuDelegate implements Delegate, Closeable {
    public GpuDelegate() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    @Override
    public long getNativeHandle() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
