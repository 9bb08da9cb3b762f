"""deploy/ as a whole: every file parses, and the docs explain what operators must know."""

from __future__ import annotations

import json

from searchgw.gateway.routing.keys import FORCED_ARM_HEADER, ROUTING_KEY_HEADER
from tests.deploy.manifests import DEPLOY, OPERATIONS_DOC, deploy_files, yaml_docs


def test_every_yaml_and_json_file_in_deploy_parses():
    yaml_files = deploy_files(".yaml", ".yml")
    json_files = deploy_files(".json")
    assert len(yaml_files) >= 15 and json_files
    for path in yaml_files:
        assert yaml_docs(path), f"{path} has no document"
    for path in json_files:
        json.loads(path.read_text())


def test_docs_explain_the_routing_headers_and_the_single_writer():
    for path in (DEPLOY / "README.md", OPERATIONS_DOC):
        text = path.read_text()
        assert ROUTING_KEY_HEADER in text and FORCED_ARM_HEADER in text, path
    readme = (DEPLOY / "README.md").read_text()
    assert "StatefulSet" in readme and "consistent hashing" in readme.lower()
    operations = OPERATIONS_DOC.read_text()
    assert "single writer" in operations and "SIGTERM" in operations
