"""Datasets: readers of the common layouts and the tf.data pipelines."""
