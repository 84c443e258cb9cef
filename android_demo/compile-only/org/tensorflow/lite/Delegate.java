package org.tensorflow.lite;

/** Compile-only declaration (see ../../../README.md). */
public interface Delegate {
    long getNativeHandle();
}
