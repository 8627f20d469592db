"""Avro codecs: single-object framing, the feature batch decoder and the prediction encoder."""

from loopline.codec.errors import CodecError
from loopline.codec.features import FeatureBatch, FeatureDecoder
from loopline.codec.framing import Codec, load_schema, schema_names
from loopline.codec.predictions import PredictionEncoder

__all__ = [
    "Codec",
    "CodecError",
    "FeatureBatch",
    "FeatureDecoder",
    "PredictionEncoder",
    "load_schema",
    "schema_names",
]
