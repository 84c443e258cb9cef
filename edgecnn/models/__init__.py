"""Model families. Importing this package registers every model."""
from . import efficientnet, mobilenet  # noqa: F401
