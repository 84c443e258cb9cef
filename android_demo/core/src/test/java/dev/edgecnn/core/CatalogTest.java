package dev.edgecnn.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class CatalogTest {
    private static String table() {
        StringBuilder rows = new StringBuilder();
        for (int c = 0; c < 3; c++) {
            rows.append(c == 0 ? "[" : ",[");
            for (int v = 0; v < 256; v++) {
                rows.append(v == 0 ? "" : ",").append(v - 128);
            }
            rows.append("]");
        }
        return "[" + rows + "]";
    }

    private static String catalog(String inputShape, String lookup) {
        return catalog(inputShape, lookup, "litert", "NHWC");
    }

    private static String catalog(String inputShape, String lookup, String runtime, String layout) {
        return "{\"schema\":\"edgecnn.android-catalog/1\",\"variants\":[{\"key\":\"m_a0.5_r8/int8\",\"variant\":\"m_a0.5_r8\","
                + "\"model\":\"m\",\"alpha\":0.5,\"resolution\":8,\"precision\":\"int8\",\"file\":\"models/m/model_int8.tflite\","
                + "\"runtime\":\"" + runtime + "\","
                + "\"sha256\":\"ab\",\"labels\":\"models/m/labels.txt\",\"numClasses\":10,"
                + "\"preprocessing\":{\"cropFraction\":0.875,\"color\":\"RGB\"},"
                + "\"input\":{\"dtype\":\"int8\",\"shape\":" + inputShape + ",\"layout\":\"" + layout + "\",\"scale\":0.018,\"zeroPoint\":-14"
                + (lookup == null ? "" : ",\"lookupTable\":" + lookup) + "},"
                + "\"output\":{\"dtype\":\"int8\",\"shape\":[1,10],\"scale\":0.1,\"zeroPoint\":3}}],"
                + "\"golden\":{\"image\":\"golden/golden.png\",\"results\":[]}}";
    }

    @Test
    public void aWellFormedCatalogParses() {
        Catalog c = Catalog.parse(catalog("[1,8,8,3]", table()));
        Catalog.Variant v = c.variants.get(0);
        assertTrue(v.isInt8());
        assertEquals(-14, (int) v.input.zeroPoint);
        assertEquals(127, v.input.lookupTable[2][255]);
        assertEquals(0.875, v.preprocessing.cropFraction, 0);
    }

    @Test
    public void wrongSchemaShapeOrTableIsRefusedWithAReason() {
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse("{\"schema\":\"other/1\"}"));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse("{not json"));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(catalog("[1,3,8,8]", table())));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(catalog("[1,8,8,3]", null)));
    }

    @Test
    public void aPteTakesPlanesAndNamesItsRuntime() {
        Catalog.Variant v = Catalog.parse(catalog("[1,3,8,8]", table(), "executorch", "NCHW")).variants.get(0);
        assertTrue(v.isExecuTorch() && v.input.isNchw());
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "executorch", "NCHW")));
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "onnxruntime", "NHWC")));
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "litert", "HWC")));
    }
}
