"""Avro codecs: single-object framing, the feature batch decoder and the prediction encoder."""

from streams.codec.errors import CodecError
from streams.codec.features import FeatureBatch, FeatureDecoder
from streams.codec.framing import Codec, load_schema, schema_names
from streams.codec.predictions import PredictionEncoder

__all__ = [
    "Codec",
    "CodecError",
    "FeatureBatch",
    "FeatureDecoder",
    "PredictionEncoder",
    "load_schema",
    "schema_names",
]
