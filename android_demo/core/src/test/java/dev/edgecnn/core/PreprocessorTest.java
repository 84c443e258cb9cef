package dev.edgecnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import org.junit.Test;

public class PreprocessorTest {
    private static int[] uniform(int width, int height, int r, int g, int b) {
        int[] argb = new int[width * height];
        java.util.Arrays.fill(argb, 0xff000000 | (r << 16) | (g << 8) | b);
        return argb;
    }

    @Test
    public void aUniformImageStaysUniformAtAnySize() {
        int[] rgb = Preprocessor.rgb(uniform(37, 23, 200, 100, 7), 37, 23, 16, 0.875);
        assertEquals(16 * 16 * 3, rgb.length);
        for (int i = 0; i < rgb.length; i += 3) {
            assertArrayEquals(new int[]{200, 100, 7}, new int[]{rgb[i], rgb[i + 1], rgb[i + 2]});
        }
    }

    @Test
    public void theCropIsCentralAndItsSideFloored() {
        // 10 x 4: side floor(4 x 0.875) = 3, left (10 - 3) / 2 = 3, top 0; mark the crop's pixels
        int[] argb = uniform(10, 4, 0, 0, 0);
        for (int row = 0; row < 3; row++) {
            for (int col = 3; col < 6; col++) {
                argb[row * 10 + col] = 0xffffffff;
            }
        }
        int[] rgb = Preprocessor.rgb(argb, 10, 4, 3, 0.875);
        for (int v : rgb) {
            assertEquals(255, v);  // the same size: an identity resize of exactly the marked square
        }
    }

    @Test
    public void resizeCoefficientsAreATriangleWidenedByTheDownscale() {
        // scale 2: support 2, centres 1 and 3: weights 0.75 0.75 0.25 0, i.e. 3/7 3/7 1/7 of 2^20, rounded
        Preprocessor.Taps down = Preprocessor.coefficients(4, 2);
        assertEquals(0, down.first[0]);
        assertArrayEquals(new long[]{449390, 449390, 149797}, down.coefficients[0]);
        assertEquals(1, down.first[1]);
        Preprocessor.Taps up = Preprocessor.coefficients(2, 4);  // upscaling: support 1
        assertArrayEquals(new long[]{1 << 20}, up.coefficients[0]);
        assertArrayEquals(new long[]{786432, 262144}, up.coefficients[1]);
    }

    @Test
    public void roundingIsOnceAndHalfUp() {
        // 2 x 2 averaged to one pixel (coefficients 2^19 each): red 2.5 -> 3, green 1.5 -> 2, blue 3.5 -> 4
        int[] argb = {0xff000103, 0xff050204, 0xff050204, 0xff000103};
        assertArrayEquals(new int[]{3, 2, 4}, Preprocessor.rgb(argb, 2, 2, 1, 1.0));
    }

    @Test
    public void int8CodesComeFromTheChannelsTable() {
        int[][] table = new int[3][256];
        for (int v = 0; v < 256; v++) {
            table[0][v] = v - 128;
            table[1][v] = -v / 2;
            table[2][v] = 127;
        }
        byte[] codes = Preprocessor.int8Codes(new int[]{255, 10, 0, 0, 255, 3}, table);
        assertArrayEquals(new byte[]{127, -5, 127, -128, -127, 127}, codes);
    }

    @Test
    public void aPixelCountThatIsNotWidthTimesHeightIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> Preprocessor.rgb(new int[5], 2, 2, 2, 1.0));
    }

    @Test
    public void planesPutEachChannelAfterTheOtherAndKeepItsTable() {
        int[] nhwc = {1, 2, 3, 4, 5, 6};  // two pixels: (1, 2, 3) and (4, 5, 6)
        assertArrayEquals(new int[]{1, 4, 2, 5, 3, 6}, Preprocessor.planes(nhwc));
        int[][] table = new int[3][256];
        for (int v = 0; v < 256; v++) {
            table[0][v] = v - 128;
            table[1][v] = -v / 2;
            table[2][v] = v / 3;
        }
        byte[] planar = Preprocessor.int8CodesOfPlanes(Preprocessor.planes(nhwc), table);
        byte[] interleaved = Preprocessor.int8Codes(nhwc, table);
        assertArrayEquals(new byte[]{interleaved[0], interleaved[3], interleaved[1], interleaved[4], interleaved[2],
                interleaved[5]}, planar);
    }
}
