"""edgecnn: classic CNNs from PyTorch to phones."""
from .errors import UsageError
from .profile import Profile, profile
from .registry import ModelInfo, create_model, get_model_info, list_models
from .spec import VariantSpec

__version__ = "0.1.0"
__all__ = ["UsageError", "Profile", "profile", "ModelInfo", "create_model", "get_model_info", "list_models",
           "VariantSpec", "__version__"]
