"""CTR models that consume item content: semantic IDs (codes), embeddings, or both.

This subpackage never imports a tokenizer and never names a dataset's column:
its input is a declared :class:`FeatureSpec`, tables, and :class:`ItemContent`.
"""

from .content import ItemContent
from .features import FeatureBuilder
from .layers import MLP, CrossNetworkV2, FactorizationMachine, FeatureEmbedding, InnerProduct, LinearTerm
from .models import BACKBONES, DCNv2, DeepFM, FNN, IPNN, ModelConfig, make_model
from .spec import FeatureSpec, FieldSpec
from .log import EncodedLog, LogColumns, LogEncoder, LogPart
from .tensors import Batch, CTRTensors, FieldBlock
from .train import CTRResult, TrainConfig, TrainResult, auc, fit_and_score, predict, run_ctr, score, train
from .vocabulary import Vocabulary

__all__ = [
    "BACKBONES", "Batch", "CTRResult", "CTRTensors", "CrossNetworkV2", "DCNv2", "DeepFM", "EncodedLog", "FNN",
    "FactorizationMachine", "FeatureBuilder", "FeatureEmbedding", "FeatureSpec", "FieldBlock", "FieldSpec", "IPNN",
    "InnerProduct", "ItemContent", "LinearTerm", "LogColumns", "LogEncoder", "LogPart", "MLP", "ModelConfig",
    "TrainConfig", "TrainResult", "Vocabulary", "auc", "fit_and_score", "make_model", "predict", "run_ctr", "score",
    "train",
]
