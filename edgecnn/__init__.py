"""edgecnn: classic CNNs from PyTorch to phones."""
from edgecnn.util.errors import UsageError
from edgecnn.zoo.profile import Profile, profile
from edgecnn.zoo.registry import ModelInfo, create_model, get_model_info, list_models
from edgecnn.zoo.spec import VariantSpec

__version__ = "0.1.0"
__all__ = ["UsageError", "Profile", "profile", "ModelInfo", "create_model", "get_model_info", "list_models",
           "VariantSpec", "__version__"]
