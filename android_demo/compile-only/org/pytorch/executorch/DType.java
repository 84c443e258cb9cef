package org.pytorch.executorch;

/** Compile-only declaration (see ../../../README.md): the two element types the app's programs use. */
public enum DType {
    INT8,
    FLOAT
}
