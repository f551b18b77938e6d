"""The AWX/AAP examples of extensions/awx/: surveys AWX accepts, asking only for variables that the
playbook of their job template reads, and a configure-awx.yml naming files that exist."""

import ast
import re
from pathlib import Path

import ansible
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "extensions" / "awx"
CONFIGURE = AWX / "configure-awx.yml"
SURVEYS = AWX / "surveys"
CREDENTIAL_TYPES = AWX / "credential_types"
# awx.awx as the PyPI ansible package installs it (test-requirements.txt).
AWX_MODULES = Path(ansible.__file__).resolve().parent.parent / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"

# AWX's survey question types and the Python type of their defaults (its SURVEY_TYPE_MAPPING).
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}
QUESTION_KEYS = {"question_name", "question_description", "variable", "type", "choices", "default", "required",
                 "min", "max", "new_question"}
CONDITIONALS = {"when", "that", "changed_when", "failed_when", "until"}
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.S)


class AnsibleLoader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's own tags (!unsafe, !vault) as the plain scalars they tag."""


AnsibleLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(path.read_text(), Loader=AnsibleLoader)


def walk(node):
    """Every dict and every other value inside a YAML document, depth first."""
    yield node
    for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
        yield from walk(child)


def action(task, *names):
    """The value of the task's keyword among names (bare, ansible.builtin. or ansible.legacy.), else None."""
    for name in names:
        for key in (name, f"ansible.builtin.{name}", f"ansible.legacy.{name}"):
            if key in task:
                return task[key]
    return None


def role_dir(name, base):
    """The directory of a role of this collection, by FQCN or bare name; None for another collection's."""
    if name.startswith("klutch.bind."):
        return ROOT / "roles" / name.split(".")[-1]
    if "." in name:
        return None
    for candidate in (base / "roles" / name, ROOT / "roles" / name):
        if candidate.is_dir():
            return candidate
    return None


def role_files(directory):
    """The files of a role that can read variables, and the roles it depends on."""
    files = [path for sub in ("tasks", "handlers", "defaults", "vars") for path in sorted((directory / sub).rglob("*.y*ml"))]
    files += sorted(path for path in (directory / "templates").rglob("*") if path.is_file())
    meta = directory / "meta" / "main.yml"
    dependencies = (load(meta) or {}).get("dependencies", []) if meta.exists() else []
    return files, [dep if isinstance(dep, str) else dep.get("role", dep.get("name")) for dep in dependencies]


def reachable(playbook):
    """The playbook and every file it brings in: imported playbooks, included tasks and roles (with their
    dependencies) of this collection, found by reading the files."""
    seen, todo = [], [playbook.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        if path.suffix not in (".yml", ".yaml"):
            continue
        roles = []
        for node in walk(load(path)):
            if not isinstance(node, dict):
                continue
            for target in (action(node, "import_playbook"), action(node, "include_tasks", "import_tasks")):
                if isinstance(target, dict):
                    target = target.get("file")
                if isinstance(target, str) and "{{" not in target:
                    todo.append((path.parent / target).resolve())
            included = action(node, "include_role", "import_role")
            if isinstance(included, dict) and isinstance(included.get("name"), str):
                roles.append(included["name"])
            for entry in node.get("roles", []) if isinstance(node.get("roles"), list) else []:
                roles.append(entry if isinstance(entry, str) else entry.get("role", entry.get("name")))
        while roles:
            directory = role_dir(roles.pop(), path.parent)
            if directory is not None and directory.resolve() not in seen:
                seen.append(directory.resolve())
                files, dependencies = role_files(directory)
                todo.extend(file.resolve() for file in files)
                roles.extend(dependencies)
    return [path for path in seen if path.is_file()]


def expressions(path):
    """The Jinja expressions of a file: the insides of {{ }} and {% %}, and conditionals (when, that, ...)."""
    if path.suffix not in (".yml", ".yaml"):
        return [group for match in JINJA.findall(path.read_text()) for group in match if group]
    found = []
    for node in walk(load(path)):
        if isinstance(node, dict):
            for key in CONDITIONALS & set(node):
                found.extend(value for value in (node[key] if isinstance(node[key], list) else [node[key]])
                             if isinstance(value, str))
        elif isinstance(node, str):
            found.extend(group for match in JINJA.findall(node) for group in match if group)
    return found


def reads(playbook, variable):
    """Whether the playbook, or a file it brings in, reads the variable in an expression."""
    pattern = re.compile(rf"(?<![\w.'\"]){re.escape(variable)}(?![\w'\"])")
    return any(pattern.search(expression) for path in reachable(playbook) for expression in expressions(path))


def play_hosts(playbook):
    """The host patterns of every play of the playbook and of the playbooks it imports."""
    documents = [load(path) for path in reachable(playbook) if path.suffix in (".yml", ".yaml")]
    return [play["hosts"] for document in documents if isinstance(document, list)
            for play in document if isinstance(play, dict) and "hosts" in play]


def configure_vars():
    return load(CONFIGURE)[0]["vars"]


def job_templates():
    return configure_vars()["klutch_awx_job_templates"]


def credential_type_file(lookup):
    """The credential_types/ file that a value of klutch_awx_credential_types loads."""
    match = re.search(r"'(credential_types/[\w.-]+)'", lookup)
    assert match, f"{lookup} loads no file of credential_types/"
    return AWX / match.group(1)


def argument_choices(playbook, variable):
    """The choices that the argument specs of the roles the playbook brings in allow for a variable."""
    choices = []
    for path in reachable(playbook):
        if path.name == "main.yml" and path.parent.name == "tasks":
            specs = path.parent.parent / "meta" / "argument_specs.yml"
            for entry in (load(specs)["argument_specs"].values() if specs.exists() else []):
                option = entry.get("options", {}).get(variable, {})
                if "choices" in option:
                    choices.append(option["choices"])
    return choices


def survey_problems(survey):
    """What AWX's survey_spec endpoint, and then a launch, would refuse in a survey."""
    problems = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            problems.append(f"{field} must be a {kind.__name__}")
    if problems or not survey["spec"]:
        return problems or ["spec has no question"]
    variables = set()
    for index, question in enumerate(survey["spec"]):
        where = f"question {index} ({question.get('variable')})"
        for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool)):
            if not isinstance(question.get(field), kind):
                problems.append(f"{where}: {field} must be a {kind.__name__}")
        problems += [f"{where}: unknown key {key}" for key in sorted(set(question) - QUESTION_KEYS)]
        if question.get("variable") in variables:
            problems.append(f"{where}: the variable is asked twice")
        variables.add(question.get("variable"))
        if not re.fullmatch(r"[A-Za-z_]\w*", str(question.get("variable"))):
            problems.append(f"{where}: not a variable name")
        qtype = question.get("type")
        if qtype not in SURVEY_TYPES:
            problems.append(f"{where}: type {qtype} is not one of {', '.join(SURVEY_TYPES)}")
            continue
        default = question.get("default", "")
        if default != "" and not isinstance(default, SURVEY_TYPES[qtype]):
            problems.append(f"{where}: default {default!r} is not a {qtype} answer")
            continue
        problems += [f"{where}: {key} must be an integer" for key in ("min", "max")
                     if question.get(key) is not None and not isinstance(question[key], int)]
        if qtype in ("multiplechoice", "multiselect"):
            choices = question.get("choices")
            if isinstance(choices, str):
                choices = [choice for choice in choices.splitlines() if choice.strip()]
            if not choices or not all(isinstance(choice, str) for choice in choices):
                problems.append(f"{where}: a {qtype} question needs its choices as strings")
                continue
            defaults = default.splitlines()
            if qtype == "multiplechoice" and len(defaults) > 1:
                problems.append(f"{where}: a multiplechoice question has one default")
            problems += [f"{where}: default {value!r} is not a choice" for value in defaults if value not in choices]
        if question.get("required") and "default" not in question and qtype != "password":
            problems.append(f"{where}: a required question without a default stops every launch from the API")
    return problems


def test_survey_problems_catches_what_awx_refuses():
    question = {"question_name": "Mode", "variable": "mode", "type": "multiplechoice", "choices": ["a", "b"],
                "default": "a", "required": True}
    assert survey_problems({"name": "s", "description": "", "spec": [question]}) == []
    assert survey_problems({"name": "s", "spec": [question]}) == ["description must be a str"]
    assert survey_problems({"name": "s", "description": "", "spec": []}) == ["spec has no question"]
    bad = [dict(question, default="c"), dict(question, type="boolean"), dict(question, required="true"),
           dict(question, default=True), dict(question, variable="my-mode")]
    for index, broken in enumerate(bad):
        assert survey_problems({"name": "s", "description": "", "spec": [broken]}), f"bad[{index}] passes"
    assert survey_problems({"name": "s", "description": "", "spec": [question, question]}) == [
        "question 1 (mode): the variable is asked twice"]


@pytest.mark.parametrize("survey", sorted(SURVEYS.glob("*.yml")), ids=lambda path: path.name)
def test_every_survey_is_a_survey_spec_that_awx_accepts(survey):
    assert survey_problems(load(survey)) == []


def test_every_survey_belongs_to_a_job_template_and_every_job_template_has_its_playbook():
    used = [(AWX / template["survey"]).resolve() for template in job_templates()]
    assert sorted(used) == sorted(path.resolve() for path in SURVEYS.glob("*.yml"))
    for template in job_templates():
        assert (ROOT / template["playbook"]).is_file(), f"{template['name']}: no {template['playbook']}"


def test_every_playbook_path_named_in_configure_awx_exists():
    named = [node["playbook"] for node in walk(load(CONFIGURE))
             if isinstance(node, dict) and isinstance(node.get("playbook"), str) and "{{" not in node["playbook"]]
    assert named, "configure-awx.yml names no playbook"
    assert [path for path in named if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("template", job_templates(), ids=lambda template: Path(template["playbook"]).stem)
def test_every_survey_variable_is_read_by_the_playbook_of_its_job_template(template):
    playbook = ROOT / template["playbook"]
    for question in load(AWX / template["survey"])["spec"]:
        assert reads(playbook, question["variable"]), f"{template['playbook']} never reads {question['variable']}"


@pytest.mark.parametrize("template", job_templates(), ids=lambda template: Path(template["playbook"]).stem)
def test_survey_choices_are_values_the_roles_accept(template):
    playbook = ROOT / template["playbook"]
    for question in load(AWX / template["survey"])["spec"]:
        for allowed in argument_choices(playbook, question["variable"]):
            assert set(question.get("choices", [])) <= set(allowed), question["variable"]


def test_the_walk_follows_imports_and_roles_and_reads_only_expressions(tmp_path):
    (tmp_path / "tasks.yml").write_text(yaml.safe_dump([{"name": "Use", "ansible.builtin.debug": {
        "msg": "{{ included_var }}"}}]))
    (tmp_path / "imported.yml").write_text(yaml.safe_dump([{"hosts": "app_clusters", "tasks": [
        {"name": "Mentions unread_var without reading it", "ansible.builtin.include_tasks": "tasks.yml"},
        {"name": "Role", "ansible.builtin.include_role": {"name": "klutch.bind.konnector"}, "when": "when_var"}]}]))
    (tmp_path / "main.yml").write_text(yaml.safe_dump([{"ansible.builtin.import_playbook": "imported.yml"}]))
    playbook = tmp_path / "main.yml"
    assert {path.name for path in reachable(playbook)} >= {"main.yml", "imported.yml", "tasks.yml"}
    assert ROOT / "roles" / "konnector" / "tasks" / "main.yml" in reachable(playbook)
    assert all(reads(playbook, name) for name in ("included_var", "when_var", "konnector_mode"))
    assert not reads(playbook, "unread_var") and not reads(playbook, "konnector")
    assert play_hosts(playbook) == ["app_clusters"]


def test_credential_types_loaded_are_the_files_that_exist():
    loaded = configure_vars()["klutch_awx_credential_types"]
    files = {key: credential_type_file(lookup) for key, lookup in loaded.items()}
    assert sorted(files.values()) == sorted(CREDENTIAL_TYPES.glob("*.yml"))
    for path in files.values():
        credential_type = load(path)
        assert credential_type["kind"] in ("cloud", "net"), path.name
        inputs = {field["id"] for field in credential_type["inputs"]["fields"]}
        assert set(credential_type["inputs"].get("required", [])) <= inputs, path.name
        assert set(credential_type["injectors"]) <= {"env", "extra_vars", "file"}, path.name
        used = {name for section in credential_type["injectors"].values() for template in section.values()
                for name in re.findall(r"{{\s*(\w+)", template)}
        assert used <= inputs | {"tower"}, path.name
    assert set(configure_vars()["klutch_awx_credentials"]) == set(loaded)


@pytest.mark.parametrize("template", job_templates(), ids=lambda template: Path(template["playbook"]).stem)
def test_each_job_template_has_the_credentials_its_playbook_uses(template):
    playbook = ROOT / template["playbook"]
    loaded = configure_vars()["klutch_awx_credential_types"]
    needed = set()
    for key, lookup in loaded.items():
        injectors = load(credential_type_file(lookup))["injectors"]
        if injectors.get("extra_vars"):
            # Its connection reaches the playbook only as these variables.
            if any(reads(playbook, variable) for variable in injectors["extra_vars"]):
                needed.add(key)
        elif any(re.search(rf"\b{key}\b", hosts) for hosts in play_hosts(playbook)):
            # An environment for every module: the credential of the group the plays run on.
            needed.add(key)
    assert set(template["credentials"]) == needed


def module_options(name):
    """The options that an awx.awx module documents, read from its DOCUMENTATION without importing it."""
    tree = ast.parse((AWX_MODULES / f"{name}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)["options"]
    raise AssertionError(f"awx.awx.{name} has no DOCUMENTATION")


@pytest.mark.skipif(not AWX_MODULES.is_dir(), reason="the awx.awx collection is not installed")
def test_configure_awx_gives_the_awx_modules_only_options_they_have():
    # ansible-lint does not check the arguments of these modules.
    tasks = [task for task in load(CONFIGURE)[0]["tasks"] if any(key.startswith("awx.awx.") for key in task)]
    assert tasks
    for task in tasks:
        module = next(key for key in task if key.startswith("awx.awx."))
        options = module_options(module.split(".")[-1])
        assert sorted(set(task[module]) - set(options)) == [], task["name"]
        for option, value in task[module].items():
            if isinstance(value, str) and "{{" not in value and "choices" in options[option]:
                assert value in options[option]["choices"], f"{task['name']}: {option}"
