package org.pytorch.executorch;

/** Compile-only declaration (see ../../../README.md). */
public class Module {
    public static final int LOAD_MODE_FILE = 0;
    public static final int LOAD_MODE_MMAP = 1;

    private Module() {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public static Module load(String modelPath, int loadMode, int numThreads) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public EValue[] forward(EValue... inputs) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public void destroy() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
