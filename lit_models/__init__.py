"""Lightning tasks (what is optimised and measured) and the plain nets they wrap."""

from lit_models.classifier import ImageClassifier
from lit_models.regressor import Regressor

__all__ = ["ImageClassifier", "Regressor"]
