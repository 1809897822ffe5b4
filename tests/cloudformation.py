"""Reading CloudFormation templates in tests."""

from __future__ import annotations

import re
from typing import Any


def references(node: Any) -> set[str]:
    """Logical ids a template value refers to (Ref, Fn::GetAtt, ${Name} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)} - set(variables)
                found |= references(variables)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}
