"""Episode datasets: schema v1, HDF5 reading/writing with validation, dataset cards."""

from lit_omarl.data.card import render_card
from lit_omarl.data.schema import (
    FORMAT_VERSION,
    DatasetError,
    EpisodeData,
    example_arrays,
    read_dataset,
    validate_arrays,
    write_dataset,
)

__all__ = [
    "FORMAT_VERSION",
    "DatasetError",
    "EpisodeData",
    "example_arrays",
    "read_dataset",
    "render_card",
    "validate_arrays",
    "write_dataset",
]
