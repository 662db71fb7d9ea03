"""Reliability proofs: model-based, fault-matrix, thread-stress and leak tests."""
