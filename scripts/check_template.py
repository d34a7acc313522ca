#!/usr/bin/env python3
"""Policy checks on template.yaml that cfn-lint cannot know: what the deployed stack exposes.

- Nothing is reachable without AWS credentials: no API Gateway (REST or HTTP API) resources
  or events, and every function URL uses AuthType AWS_IAM. The edge proxy is the only front
  door; it signs its requests.
- Every function with a URL gets CURSOR_SECRET as a Secrets Manager dynamic reference to a
  secret the template generates, so the value is in neither the template nor its outputs;
  functions without one (the scheduled sweeper) do not get it at all.
- The edge proxy's managed policies: invoking the two function URLs (IAM auth only), and reading
  the registry table, nothing more (registering uses the deployer's credentials).

Usage: check_template.py [--template template.yaml]; exits 1 naming each violation.
"""

import argparse
import re
import sys

from tables import load_template

API_TYPES = re.compile(r"^AWS::(Serverless::(Http)?Api|ApiGateway(V2)?::)")
READ_ONLY_REGISTRY_ACTIONS = {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:DescribeTable"}


def function_env(template, function):
    globals_env = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    own_env = function.get("Properties", {}).get("Environment", {}).get("Variables", {})
    return {**globals_env, **own_env}


def statements(resource):
    document = resource.get("Properties", {}).get("PolicyDocument", {})
    return document.get("Statement", [])


def actions_of(statement):
    action = statement.get("Action", [])
    return set([action] if isinstance(action, str) else action)


def violations(template):
    resources = template.get("Resources", {})
    found = []
    secrets = {
        name
        for name, r in resources.items()
        if r.get("Type") == "AWS::SecretsManager::Secret"
        and "GenerateSecretString" in r.get("Properties", {})
    }
    for name, resource in resources.items():
        kind = resource.get("Type", "")
        if API_TYPES.match(kind):
            found.append(f"{name}: {kind} exposes the functions without the proxy")
        if kind != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        for event_name, event in (properties.get("Events") or {}).items():
            if event.get("Type") in ("Api", "HttpApi"):
                found.append(f"{name}.Events.{event_name}: a public {event['Type']} route")
        url = properties.get("FunctionUrlConfig")
        if url is not None and url.get("AuthType") != "AWS_IAM":
            found.append(f"{name}.FunctionUrlConfig.AuthType must be AWS_IAM")
        if url is None:
            # Not an HTTP function (a scheduled one): it mints no cursors and gets no secret.
            if "CURSOR_SECRET" in function_env(template, resource):
                found.append(f"{name}: has no function URL, so it must not get CURSOR_SECRET")
            continue
        secret = function_env(template, resource).get("CURSOR_SECRET")
        reference = secret.get("Fn::Sub") if isinstance(secret, dict) else None
        match = re.fullmatch(r"\{\{resolve:secretsmanager:\$\{(\w+)\}:SecretString\}\}", reference or "")
        if not match or match.group(1) not in secrets:
            found.append(
                f"{name}: CURSOR_SECRET must be a secretsmanager dynamic reference to a generated secret"
            )
    for output_name, output in template.get("Outputs", {}).items():
        if any(secret in str(output) for secret in secrets):
            found.append(f"Outputs.{output_name} names the cursor secret")
    registry = resources.get("EdgeProxyRegistryPolicy")
    if registry is None:
        found.append("EdgeProxyRegistryPolicy is missing")
    else:
        for statement in statements(registry):
            extra = actions_of(statement) - READ_ONLY_REGISTRY_ACTIONS
            if extra:
                found.append(f"EdgeProxyRegistryPolicy grants more than reads: {sorted(extra)}")
    invoke = resources.get("EdgeProxyInvokePolicy")
    if invoke is None:
        found.append("EdgeProxyInvokePolicy is missing")
    else:
        for statement in statements(invoke):
            if actions_of(statement) != {"lambda:InvokeFunctionUrl"}:
                found.append("EdgeProxyInvokePolicy grants more than lambda:InvokeFunctionUrl")
            condition = statement.get("Condition", {}).get("StringEquals", {})
            if condition.get("lambda:FunctionUrlAuthType") != "AWS_IAM":
                found.append("EdgeProxyInvokePolicy must be limited to AWS_IAM function URLs")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="template.yaml")
    args = parser.parse_args()
    found = violations(load_template(args.template))
    for violation in found:
        print(f"template: {violation}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{args.template}: nothing deployed is reachable without credentials; secrets stay out of it")


if __name__ == "__main__":
    main()
