"""The int8 engine, the same for every int8 file whatever format writes it: the quantizer's rules, the
remedies that keep the float function (equalisation, bias correction), int8-aware fine-tuning, float units,
and the control flow that holds a file to its bound (`engine`)."""
