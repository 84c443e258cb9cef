package dev.edgecnn.core;

import static org.junit.Assert.assertFalse;
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
}
