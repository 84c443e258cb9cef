"""Rewrites of a network into the same function in forms the converters lower well: module rewrites that keep
XNNPACK's pieces whole (`modules`) and passes on the `torch.export` graph that put any network in the forms
int8 quantizes to (`aten`). Each computes exactly what it replaces."""
