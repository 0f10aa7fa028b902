"""The penultimate features the out-of-domain score and the ONNX path rely on."""

import numpy as np

from brainxai.inference import Classifier


def test_features_are_the_heads_input_and_logits_unchanged() -> None:
    clf = Classifier.load()
    x = np.random.default_rng(0).integers(0, 256, (3, 224, 224), dtype=np.uint8)
    logits, feats = clf.logits_and_features_prepared(x, batch_size=2)
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    np.testing.assert_array_equal(logits, clf.logits_prepared(x, batch_size=2))
    head = clf._head
    rebuilt = feats @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    np.testing.assert_allclose(rebuilt, logits, atol=1e-5)
    # the hook is gone: a second call captures only its own batch
    _, again = clf.logits_and_features_prepared(x[:1])
    assert again.shape == (1, 1280)
