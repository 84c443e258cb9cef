package org.tensorflow.lite;

import java.nio.ByteBuffer;

/** Compile-only declaration (see ../../../README.md). */
public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() {
            throw new UnsupportedOperationException("compile-only declaration");
        }

        public Options setNumThreads(int numThreads) {
            throw new UnsupportedOperationException("compile-only declaration");
        }

        public Options setUseXNNPACK(boolean useXNNPACK) {
            throw new UnsupportedOperationException("compile-only declaration");
        }

        public Options addDelegate(Delegate delegate) {
            throw new UnsupportedOperationException("compile-only declaration");
        }
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public void run(Object input, Object output) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public Tensor getInputTensor(int inputIndex) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    public Tensor getOutputTensor(int outputIndex) {
        throw new UnsupportedOperationException("compile-only declaration");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only declaration");
    }
}
