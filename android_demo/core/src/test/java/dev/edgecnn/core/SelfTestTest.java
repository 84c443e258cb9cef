package dev.edgecnn.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.List;
import org.junit.Test;

public class SelfTestTest {
    private static Catalog.GoldenResult expected() {
        Catalog.GoldenResult r = new Catalog.GoldenResult();
        r.key = "m/int8";
        r.top5 = new int[]{4, 2, 0, 1, 3};
        r.top5Scores = new float[]{0.5f, 0.2f, 0.1f, 0.0995f, 0.05f};
        return r;
    }

    private static List<TopK.Prediction> ranked(float... logits) {
        return TopK.top(logits, 5, null);
    }

    @Test
    public void theSameOrderPasses() {
        assertTrue(SelfTest.compare(ranked(3f, 1f, 4f, 0.5f, 9f), expected(), 1e-3).passed);
    }

    @Test
    public void aSwapOfNearTiesPassesAndAnyOtherDifferenceFails() {
        assertTrue(SelfTest.compare(ranked(3f, 3.1f, 4f, 0.5f, 9f), expected(), 1e-3).passed);  // 0 and 1: near tie
        assertFalse(SelfTest.compare(ranked(3f, 1f, 9f, 0.5f, 4f), expected(), 1e-3).passed);  // top-1 swapped
        assertFalse(SelfTest.compare(ranked(3f, 1f, 4f, 0.5f, 9f, 8f), expected(), 1e-3).passed);  // another class
    }

    private static Catalog.ModelFile int8File(String layout) {
        Catalog.ModelFile file = new Catalog.ModelFile();
        file.variant = new Catalog.Variant();
        file.variant.resolution = 2;
        file.input = new Catalog.TensorSpec();
        file.input.dtype = "int8";
        file.input.layout = layout;
        return file;
    }

    @Test
    public void anInputDifferenceNamesThePreprocessingAndTheFirstPixelAndChannel() {
        byte[] python = new byte[12];
        byte[] phone = python.clone();
        assertNull(SelfTest.inputDifference(python, phone, int8File("NHWC")));
        phone[7] = 5;  // NHWC: pixel 2 (row 1, column 0), channel 1; NCHW: plane 1 (green), pixel 3
        phone[11] = 1;
        assertEquals("the input differs from Python's (the preprocessing, not the model file): 2 of 12 values, first "
                + "at pixel (row 1, column 0) green: phone 5, Python 0", SelfTest.inputDifference(python, phone,
                int8File("NHWC")));
        assertEquals("the input differs from Python's (the preprocessing, not the model file): 2 of 12 values, first "
                + "at pixel (row 1, column 1) green: phone 5, Python 0", SelfTest.inputDifference(python, phone,
                int8File("NCHW")));
    }
}
