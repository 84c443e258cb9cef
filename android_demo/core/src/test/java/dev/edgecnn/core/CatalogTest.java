package dev.edgecnn.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertSame;
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
        return catalog(inputShape, lookup, "tflite", "NHWC");
    }

    private static String catalog(String inputShape, String lookup, String format, String layout) {
        String file = "model_int8." + format;
        return "{\"schema\":\"edgecnn.app-catalog/1\",\"variants\":[{\"variant\":\"m_a0.5_r8\",\"model\":\"m\","
                + "\"alpha\":0.5,\"resolution\":8,\"numClasses\":10,\"labels\":\"models/m_a0.5_r8/labels.txt\","
                + "\"weights\":\"random\",\"preprocessing\":{\"cropFraction\":0.875,\"color\":\"RGB\"},"
                + "\"files\":[{\"key\":\"m_a0.5_r8/" + file + "\",\"file\":\"models/m_a0.5_r8/" + file + "\","
                + "\"format\":\"" + format + "\",\"precision\":\"int8\",\"runtime\":\"some runtime\","
                + "\"sha256\":\"ab\",\"bytes\":1,\"input\":{\"dtype\":\"int8\",\"shape\":" + inputShape + ","
                + "\"layout\":\"" + layout + "\",\"scale\":0.018,\"zeroPoint\":-14"
                + (lookup == null ? "" : ",\"lookupTable\":" + lookup) + "},"
                + "\"output\":{\"dtype\":\"int8\",\"shape\":[1,10],\"scale\":0.1,\"zeroPoint\":3}}]}],"
                + "\"golden\":{\"images\":[{\"name\":\"chelsea.png\",\"file\":\"golden/chelsea.png\",\"source\":\"s\","
                + "\"width\":451,\"height\":300}],\"results\":[]}}";
    }

    @Test
    public void aWellFormedCatalogParses() {
        Catalog c = Catalog.parse(catalog("[1,8,8,3]", table()));
        Catalog.ModelFile f = c.modelFiles().get(0);
        assertTrue(f.isInt8() && !f.isExecuTorch());
        assertEquals(-14, (int) f.input.zeroPoint);
        assertEquals(127, f.input.lookupTable[2][255]);
        assertSame(c.variants.get(0), f.variant);
        assertEquals("m_a0.5_r8", f.variant.id);
        assertEquals(0.875, f.variant.preprocessing.cropFraction, 0);
        assertEquals("golden/chelsea.png", c.golden.selfTestImage().file);
        assertEquals("", f.variant.weightsNote());  // a catalog without the field: a trained classifier
        Catalog random = Catalog.parse(catalog("[1,8,8,3]", table()).replace("\"weights\":\"random\",",
                "\"weights\":\"random\",\"trained\":false,"));
        assertEquals("random weights, not a trained classifier: its classes mean nothing",
                random.variants.get(0).weightsNote());
    }

    @Test
    public void wrongSchemaShapeOrTableIsRefusedWithAReason() {
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse("{\"schema\":\"other/1\"}"));
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table()).replace("app-catalog/1", "android-catalog/1")));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse("{not json"));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(catalog("[1,3,8,8]", table())));
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(catalog("[1,8,8,3]", null)));
        String noImage = catalog("[1,8,8,3]", table()).replaceAll("\"images\":\\[.*\\],", "\"images\":[],");
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(noImage));
    }

    @Test
    public void aPteTakesPlanesAndIsRunByExecuTorch() {
        Catalog.ModelFile f = Catalog.parse(catalog("[1,3,8,8]", table(), "executorch", "NCHW")).modelFiles().get(0);
        assertTrue(f.isExecuTorch() && f.input.isNchw());
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "executorch", "NCHW")));
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "executorch", "NHWC")));
        assertThrows(IllegalArgumentException.class,
                () -> Catalog.parse(catalog("[1,8,8,3]", table(), "tflite", "HWC")));
    }

    /** The web page's catalog is the same schema: its .onnx files are checked, and this app leaves them out. */
    @Test
    public void aFileOfAnotherFormatIsCheckedButNotRun() {
        Catalog c = Catalog.parse(catalog("[1,8,8,3]", table(), "onnx", "NHWC"));
        assertEquals(1, c.variants.get(0).files.size());
        assertTrue(c.modelFiles().isEmpty());
        assertThrows(IllegalArgumentException.class, () -> Catalog.parse(catalog("[1,8,8,3]", null, "onnx", "NHWC")));
    }
}
