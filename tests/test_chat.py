"""`nanogpt2 chat` (one-shot and the conversation on stdin), `ChatSession` and `pipeline("text-generation")` on a
tiny untrained nanogpt2 chat model: a reply comes through each path, through the chat template, and stops at
the end-of-turn token."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from transformers import AutoTokenizer, PreTrainedTokenizerBase, pipeline

from nanogpt2.cli import main
from nanogpt2.data.chat_template import END_OF_TURN, add_chat_template
from nanogpt2.modeling import NanoGPT2Config, NanoGPT2LMHeadModel, padded_vocab_size
from nanogpt2.utils import InputError
from nanogpt2.utils.chat import ChatSession
from nanogpt2.utils.models import load_model_and_tokenizer

CONTEXT = 64
MAX_NEW_TOKENS = 8
GREEDY = ["--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS)]
MESSAGE = "the cat reads a long book"
SYSTEM = "you are helpful"


def tiny_chat_model(tokenizer_dir: Path) -> tuple[NanoGPT2LMHeadModel, PreTrainedTokenizerBase]:
    """An untrained nanogpt2 with the chat tokens in its padded vocabulary, the chat template and the end-of-turn
    token among its generation config's end-of-sequence ids, as an SFT run saves it."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos_ids = add_chat_template(tokenizer)
    torch.manual_seed(0)
    config = NanoGPT2Config(vocab_size=padded_vocab_size(len(tokenizer)), tokenizer_vocab_size=len(tokenizer),
                            n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2, bos_token_id=eos_ids[0],
                            eos_token_id=eos_ids[0])
    model = NanoGPT2LMHeadModel(config).eval()
    model.generation_config.eos_token_id = eos_ids
    return model, tokenizer


def save(model: NanoGPT2LMHeadModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chat_model_dir(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(*tiny_chat_model(tiny_tokenizer_dir), tmp_path_factory.mktemp("chat_model"))


def greedy_session(model_dir: Path, system: str | None = None) -> ChatSession:
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    return ChatSession(model, tokenizer, system=system, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                       pad_token_id=tokenizer.eos_token_id)


def streamed(session: ChatSession, message: str) -> str:
    """What the CLI prints for one message: the streamed reply and a newline."""
    pieces: list[str] = []
    session.send(message, on_text=pieces.append)
    return "".join(pieces) + "\n"


def test_a_reply_is_the_greedy_continuation_of_the_chat_template(chat_model_dir: Path) -> None:
    session = greedy_session(chat_model_dir, system=SYSTEM)
    pieces: list[str] = []
    reply = session.send(MESSAGE, on_text=pieces.append)
    model, tokenizer = session.model, session.tokenizer
    ids = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert reply.text == expected == "".join(pieces).strip() != ""
    assert (reply.ended, reply.dropped_messages) == (False, 0)  # untrained: it runs into max_new_tokens
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    assert session.messages[-1]["content"] == reply.text


def test_one_shot_script_prints_only_the_reply(chat_model_dir: Path) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "chat.py"), "--model", str(chat_model_dir), "--prompt",
           MESSAGE, *GREEDY]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == streamed(greedy_session(chat_model_dir), MESSAGE)
    assert f"--max-new-tokens {MAX_NEW_TOKENS}" in done.stderr  # the note that the reply was cut


def test_conversation_on_stdin_keeps_history_resets_and_survives_a_long_message(
        chat_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    too_long = " ".join(["the green house"] * 40)
    lines = ["hello", too_long, "hello", "/reset", "hello", "/exit", "never answered"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", "--model", str(chat_model_dir), *GREEDY]) == 0
    out, err = capsys.readouterr()
    session = greedy_session(chat_model_dir)
    first, second = streamed(session, "hello"), streamed(session, "hello")
    assert second != first  # the history changes the reply, so a reply equal to `first` shows the reset
    assert out == first + second + first
    assert "error: the message is too long" in err and "note: new conversation" in err and "Traceback" not in err


def test_history_beyond_the_context_drops_the_oldest_turns_and_keeps_the_system_message(chat_model_dir: Path) -> None:
    session = greedy_session(chat_model_dir, system=SYSTEM)
    system, budget = session.messages[:1], CONTEXT - MAX_NEW_TOKENS
    turns, dropped = [], []  # every turn ever sent, and how many messages each send dropped
    for i in range(6):
        message = f"question {i}: {MESSAGE}"
        reply = session.send(message)
        turns += [{"role": "user", "content": message}, {"role": "assistant", "content": reply.text}]
        dropped.append(reply.dropped_messages)
    assert dropped[0] == 0 and sum(dropped) > 0
    assert session.messages == system + turns[sum(dropped):]  # the system message, then the newest turns
    # The last reply's prompt fit the context with room for the reply; one more of the dropped turns would not.
    assert session.prompt_ids(session.messages[:-1]).shape[1] <= budget
    assert session.prompt_ids(system + turns[sum(dropped) - 2:-1]).shape[1] > budget
    with pytest.raises(InputError, match="too long"):
        session.send(" ".join(["the green house"] * 40))
    assert session.messages == system + turns[sum(dropped):]  # unchanged by the refused message
    # A long first message: dropping it alone would fit, but its reply goes with it (turns start with a user).
    short = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "a dog"}]
    turns = [{"role": "user", "content": " ".join(["the green house"] * 10)}, short[1], *short, short[0]]
    assert session.fit_to_context(turns)[1] == turns[2:]


def test_reply_stops_at_the_end_of_turn_token(tiny_tokenizer_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model, tokenizer = tiny_chat_model(tiny_tokenizer_dir)
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    with torch.no_grad():  # every position's logits: 10 for <|end|>, 0 elsewhere (ln_f outputs e_0; tied rows)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wte.weight[end_id, 0] = 10.0
    model_dir = save(model, tokenizer, tmp_path / "ends")
    reply = greedy_session(model_dir).send(MESSAGE)
    assert (reply.text, reply.ended) == ("", True)
    assert main(["chat", "--model", str(model_dir), "--prompt", MESSAGE, *GREEDY]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing cut, nothing dropped


def test_pipeline_given_messages_returns_the_assistant_reply(chat_model_dir: Path) -> None:
    chat = pipeline("text-generation", model=str(chat_model_dir), device="cpu")
    messages = [{"role": "user", "content": MESSAGE}]
    (result,) = chat(messages, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    *history, reply = result["generated_text"]
    assert history == messages and reply["role"] == "assistant"
    assert reply["content"].strip() == greedy_session(chat_model_dir).send(MESSAGE).text != ""


@pytest.mark.parametrize(("extra", "expected"), [
    (["--max-new-tokens", str(CONTEXT)], f"context of {CONTEXT} tokens"),
    (["--prompt", " ".join(["the green house"] * 40)], "the message is too long"),
    (["--prompt", "  "], "the message is empty"),
])
def test_bad_requests_are_one_line_errors(chat_model_dir: Path, extra: list[str], expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["chat", "--model", str(chat_model_dir), "--prompt", MESSAGE, *GREEDY, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_model_without_a_chat_template_is_refused(tiny_tokenizer_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = tiny_chat_model(tiny_tokenizer_dir)
    model_dir = save(model, AutoTokenizer.from_pretrained(tiny_tokenizer_dir), tmp_path / "plain")
    assert main(["chat", "--model", str(model_dir), "--prompt", MESSAGE]) == 2
    err = capsys.readouterr().err
    assert "no chat template" in err and str(model_dir) in err and "Traceback" not in err
