"""CTR models that consume item content: semantic IDs (codes), embeddings, or both.

This subpackage never imports a tokenizer and never names a dataset's column:
its input is a declared :class:`FeatureSpec`, tables, and :class:`ItemContent`.
"""

from .content import ItemContent
from .features import CTRTensors, FeatureBuilder
from .layers import MLP, CrossNetworkV2, FactorizationMachine, FeatureEmbedding, InnerProduct, LinearTerm
from .models import BACKBONES, DCNv2, DeepFM, FNN, IPNN, ModelConfig, make_model
from .spec import FeatureSpec, FieldSpec
from .train import CTRResult, TrainConfig, TrainResult, evaluate, predict, run_ctr, train
from .vocabulary import Vocabulary

__all__ = [
    "BACKBONES", "CTRResult", "CTRTensors", "CrossNetworkV2", "DCNv2", "DeepFM", "FNN", "IPNN",
    "FactorizationMachine", "FeatureBuilder", "FeatureEmbedding", "FeatureSpec", "FieldSpec",
    "InnerProduct", "ItemContent", "LinearTerm", "MLP", "ModelConfig", "TrainConfig", "TrainResult",
    "Vocabulary", "evaluate", "make_model", "predict", "run_ctr", "train",
]
