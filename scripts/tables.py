#!/usr/bin/env python3
"""Create the local DynamoDB tables from template.yaml, the only definition of every table.

Reads each AWS::DynamoDB::Table resource and creates it (key schema, attributes, GSIs, TTL) on
the endpoint in AWS_ENDPOINT_URL, named after its logical id. Prints, for each function
environment variable that is `!Ref <Table>`, a `NAME=<table>` line, so the caller can hand the
functions the same variables the template gives them on AWS.

Usage: tables.py create [--template template.yaml]   create tables, print env lines
       tables.py env    [--template template.yaml]   only print env lines
       tables.py count  [--template template.yaml]   print "<table> <item count>" per table
"""

import argparse
import os
import sys
import time

import boto3
import yaml


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short intrinsic-function tags."""


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else "Fn::" + tag_suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)


def tables(template):
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


def env_lines(template):
    table_ids = set(tables(template))
    lines = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for name, value in variables.items():
            if isinstance(value, dict) and value.get("Ref") in table_ids:
                lines.append(f"{name}={value['Ref']}")
    return lines


def client():
    return boto3.client(
        "dynamodb",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def create(template):
    dynamodb = client()
    existing = set(dynamodb.list_tables()["TableNames"])
    for name, props in tables(template).items():
        if name in existing:
            print(f"table {name} exists", file=sys.stderr)
            continue
        request = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        dynamodb.create_table(**request)
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        print(f"created table {name}", file=sys.stderr)


def count(template):
    dynamodb = client()
    for name in tables(template):
        total = 0
        kwargs = {"TableName": name, "Select": "COUNT", "ConsistentRead": True}
        while True:
            page = dynamodb.scan(**kwargs)
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        print(f"{name} {total}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["create", "env", "count"])
    parser.add_argument("--template", default="template.yaml")
    args = parser.parse_args()
    template = load_template(args.template)
    if not tables(template):
        sys.exit(f"{args.template} defines no AWS::DynamoDB::Table")
    if args.command == "create":
        for attempt in range(30):
            try:
                create(template)
                break
            except Exception as error:  # the endpoint may still be starting
                if attempt == 29:
                    raise
                print(f"waiting for DynamoDB endpoint: {error}", file=sys.stderr)
                time.sleep(1)
    if args.command == "count":
        count(template)
        return
    for line in env_lines(template):
        print(line)


if __name__ == "__main__":
    main()
