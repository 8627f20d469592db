"""``loopline models bootstrap --dataset`` names the classes as the dataset's labels are written."""

import numpy as np

from loopline.models_cli import dataset_classes


def test_class_names_are_the_labels_own_values():
    names, y = dataset_classes(np.array([True, False, True]))
    assert names == ["False", "True"] and y.tolist() == [1, 0, 1]
    names, y = dataset_classes(np.array(["yes", "no", "no"]))
    assert names == ["no", "yes"] and y.tolist() == [1, 0, 0]
    names, y = dataset_classes(np.array([2, 5, 2]))
    assert names == ["2", "5"] and y.tolist() == [0, 1, 0]
    names, y = dataset_classes(np.array([1.0, 0.0]))
    assert names == ["0", "1"] and y.tolist() == [1, 0]


def test_given_class_names_are_indexed_by_y():
    names, y = dataset_classes(np.array([0, 1, 1]), np.array(["cat", "dog"]))
    assert names == ["cat", "dog"] and y.tolist() == [0, 1, 1]
