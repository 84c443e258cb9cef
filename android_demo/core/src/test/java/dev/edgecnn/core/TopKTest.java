package dev.edgecnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

public class TopKTest {
    @Test
    public void int8OutputsAreDequantizedWithScaleAndZeroPoint() {
        Catalog.TensorSpec spec = new Catalog.TensorSpec();
        spec.dtype = "int8";
        spec.scale = 0.5f;
        spec.zeroPoint = -3;
        ByteBuffer raw = ByteBuffer.allocateDirect(3).order(ByteOrder.nativeOrder());
        raw.put(new byte[]{-3, 5, -128}).rewind();
        assertArrayEquals(new float[]{0f, 4f, -62.5f}, TopK.logits(spec, raw, 3), 0f);
    }

    @Test
    public void floatOutputsAreReadInNativeOrder() {
        Catalog.TensorSpec spec = new Catalog.TensorSpec();
        spec.dtype = "float32";
        ByteBuffer raw = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
        raw.putFloat(1.5f).putFloat(-2f).rewind();
        assertArrayEquals(new float[]{1.5f, -2f}, TopK.logits(spec, raw, 2), 0f);
    }

    @Test
    public void rankedBestFirstWithLabelsAndTiesToTheLowerIndex() {
        List<TopK.Prediction> top = TopK.top(new float[]{1f, 3f, 3f, -1f, 2f}, 3, Arrays.asList("a", "b", "c", "d", "e"));
        assertEquals(1, top.get(0).index);
        assertEquals(2, top.get(1).index);
        assertEquals("e", top.get(2).label);
        double[] p = TopK.softmax(new float[]{1f, 3f, 3f, -1f, 2f});
        assertEquals(p[1], top.get(0).probability, 1e-7);
        assertEquals(1.0, Arrays.stream(p).sum(), 1e-12);
    }

    @Test
    public void kLargerThanTheClassesGivesEveryClass() {
        assertEquals(2, TopK.top(new float[]{0f, 1f}, 5, null).size());
    }
}
