"""`bus.validation`: the one way a refused input is reported, as `[{field, message}]` and as
one line, wherever it is refused (consumer, RPC server, edge, CLI, manager, settings)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from bus.errors import Invalid
from bus.validation import describe_validation, field_errors, invalid, summary
from schemas import ErrorBody, Register

REGISTER = {"service": "web", "instance_id": "web-1", "address": "127.0.0.1", "port": 8080}


class Even(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def _even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("must be even")
        return n


def refused(model: type[BaseModel], data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        if isinstance(data, bytes):
            model.model_validate_json(data)
        else:
            model.model_validate(data)
    return info.value


def test_each_error_names_its_field_by_dotted_path():
    exc = refused(Register, {**REGISTER, "port": 0, "tags": ["ok", 5]})
    assert [e["field"] for e in field_errors(exc)] == ["port", "tags.1"]
    assert [e["field"] for e in field_errors(exc, prefix="body")] == ["body.port", "body.tags.1"]
    assert field_errors(exc)[0]["message"].startswith("Input should be greater than")


def test_an_error_about_the_whole_input_is_named_by_the_prefix_or_body():
    exc = refused(Register, b"not json")
    assert field_errors(exc)[0]["field"] == "body"
    assert field_errors(exc, prefix="query")[0]["field"] == "query"
    assert field_errors(exc, whole="")[0]["field"] == ""
    assert describe_validation(exc).startswith("body: Invalid JSON")


def test_messages_lose_pydantics_value_error_prefix():
    exc = refused(Even, {"n": 3})
    assert field_errors(exc) == [{"field": "n", "message": "must be even"}]


def test_the_summary_is_one_line_of_at_most_five_errors():
    errors = [{"field": f"f{i}", "message": "bad"} for i in range(7)]
    line = summary(errors)
    assert line == "f0: bad; f1: bad; f2: bad; f3: bad; f4: bad"
    assert summary([{"field": "", "message": "both or neither"}]) == "both or neither"


def test_invalid_is_the_rpc_error_with_every_field_and_an_error_body_of_it():
    exc = refused(Register, {**REGISTER, "port": 0})
    error = invalid(exc, prefix="spec")
    assert isinstance(error, Invalid)
    assert error.message.startswith("spec.port: ")
    assert error.details == {"errors": field_errors(exc, prefix="spec")}

    body = invalid(exc).to_body()  # what the RPC server answers
    assert isinstance(body, ErrorBody)
    assert body.code == "invalid"
    assert body.message.startswith("port: ")
    assert body.details["errors"][0]["field"] == "port"
