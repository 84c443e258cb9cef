"""Model families. Importing this package registers every model."""

from . import densenet, efficientnet, inception, mobilenet, resnet, vgg  # noqa: F401
