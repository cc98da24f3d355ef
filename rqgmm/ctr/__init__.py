"""CTR models that consume item content: semantic IDs (codes), embeddings, or both.

This subpackage never imports a tokenizer and never names a dataset's column:
its input is a declared :class:`FeatureSpec`, tables, and :class:`ItemContent`. May import ``runtime/``,
``files/`` and :mod:`rqgmm.errors` only.
"""

from rqgmm.ctr.content import ItemContent
from rqgmm.ctr.features import FeatureBuilder
from rqgmm.ctr.layers import MLP, CrossNetworkV2, FactorizationMachine, FeatureEmbedding, InnerProduct, LinearTerm
from rqgmm.ctr.models import BACKBONES, DCNv2, DeepFM, FNN, IPNN, ModelConfig, make_model
from rqgmm.ctr.spec import FeatureSpec, FieldSpec
from rqgmm.ctr.log import EncodedLog, LogColumns, LogEncoder, LogPart
from rqgmm.ctr.tensors import Batch, CTRTensors, FieldBlock
from rqgmm.ctr.train import CTRResult, TrainConfig, TrainResult, auc, fit_and_score, predict, run_ctr, score, train
from rqgmm.ctr.vocabulary import Vocabulary

__all__ = [
    "BACKBONES", "Batch", "CTRResult", "CTRTensors", "CrossNetworkV2", "DCNv2", "DeepFM", "EncodedLog", "FNN",
    "FactorizationMachine", "FeatureBuilder", "FeatureEmbedding", "FeatureSpec", "FieldBlock", "FieldSpec", "IPNN",
    "InnerProduct", "ItemContent", "LinearTerm", "LogColumns", "LogEncoder", "LogPart", "MLP", "ModelConfig",
    "TrainConfig", "TrainResult", "Vocabulary", "auc", "fit_and_score", "make_model", "predict", "run_ctr", "score",
    "train",
]
