"""/tokenize and /detokenize: the engine's own vocabulary, as vLLM and SGLang serve them."""
from __future__ import annotations


def test_tokenize_maps_each_character_to_its_id(client):
    status, body = client.post("/tokenize", {"prompt": "30?"})
    assert status == 200, body
    assert body["tokens"] == [3, 0, 10]
    assert body["count"] == 3
    assert body["max_model_len"] == client.app.config.max_seq_len


def test_detokenize_answers_both_shapes_and_eos_is_empty(client):
    eos = client.app.config.eos_id
    status, body = client.post("/detokenize", {"tokens": [7, 10, eos]})
    assert status == 200, body
    assert body["prompt"] == body["text"] == "7?"


def test_characters_outside_the_vocabulary_are_refused(client):
    status, body = client.post("/tokenize", {"prompt": "3x"})
    assert status == 400
    assert "outside the vocabulary" in body["error"]["message"]
    status, body = client.post("/detokenize", {"tokens": [client.app.config.vocab_size]})
    assert status == 400
    assert "out of the vocabulary" in body["error"]["message"]


def test_messages_are_refused_with_a_reason(client):
    status, body = client.post("/tokenize", {"messages": [{"role": "user", "content": "1"}]})
    assert status == 400
    assert "messages" in body["error"]["message"]
