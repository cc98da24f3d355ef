"""CTR models that consume semantic IDs (a codes table) or dense item content.

This subpackage never imports a tokenizer: its content input is a codes table
or an embedding table, so it runs on IDs produced by any method.
"""

from .features import CTRTensors, FeatureBatch, FeatureBuilder, FieldSpec, Vocabulary
from .layers import MLP, CrossNetworkV2, FactorizationMachine, FeatureEmbedding, LinearTerm
from .models import BACKBONES, DCNv2, DeepFM, FNN, ModelConfig, make_model
from .train import CTRResult, TrainConfig, TrainResult, evaluate, predict, run_ctr, train

__all__ = [
    "BACKBONES", "CTRResult", "CTRTensors", "CrossNetworkV2", "DCNv2", "DeepFM", "FNN",
    "FactorizationMachine", "FeatureBatch", "FeatureBuilder", "FeatureEmbedding", "FieldSpec",
    "LinearTerm", "MLP", "ModelConfig", "TrainConfig", "TrainResult", "Vocabulary",
    "evaluate", "make_model", "predict", "run_ctr", "train",
]
