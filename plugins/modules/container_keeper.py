#!/usr/bin/python
# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: container_keeper
short_description: Record a compose service's container exactly and put exactly that back, secrets never leaving Docker
version_added: 0.1.0
description:
  - Finds the container of a compose service (by its C(com.docker.compose.project) and C(com.docker.compose.service)
    labels) and describes it - image id, name, environment, command, entrypoint, user, working directory, labels,
    exposed and published ports, network mode, restart policy and mounts, its restart count and start time.
  - The environment is returned with every secret's value hidden (a name matching O(secret_pattern), or a URL
    carrying a password); secret values never leave the Docker host's own container store.
  - O(action=keep) creates a stopped I(keeper) container holding that exact configuration (the same image by id and
    environment; the rest as a label), so it can be put back later and the image cannot be pruned while it is kept.
  - O(action=check) tells whether a keeper and its image still exist, without changing anything.
  - O(action=restore) replaces the service's container by one created exactly as the keeper records, and starts it.
  - O(action=prune) removes the service's keepers but those named in O(keep).
  - Talks to the engine through the Docker CLI (O(docker)); every failure carries the CLI's own stderr.
author:
  - LedgerMind SRE (@ledgermind)
options:
  action:
    description: What to do.
    type: str
    choices: [inspect, keep, check, restore, prune]
    default: inspect
  project:
    description: Compose project name.
    type: str
    required: true
  service:
    description: Compose service name.
    type: str
    required: true
  keeper:
    description: Keeper container (id or name) to check or restore from.
    type: str
    default: ""
  keep:
    description: Keepers (ids or names) that O(action=prune) leaves.
    type: list
    elements: str
    default: []
  docker:
    description: The Docker CLI.
    type: str
    default: docker
  secret_pattern:
    description: Regular expression (case-insensitive, searched) naming environment variables whose values are secret.
    type: str
    default: '(^|_)(PASSWORD|PASSWD|PWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|AUTH)(_|$)'
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: inspect and check run; keep, restore and prune say what they would do.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Keep what runs before the deploy
  ledgermind.migrations.container_keeper:
    action: keep
    project: ledgermind
    service: backend
  register: kept

- name: Put it back
  ledgermind.migrations.container_keeper:
    action: restore
    project: ledgermind
    service: backend
    keeper: "{{ kept.keeper.id }}"
'''

RETURN = r'''
container:
  description: The service's container (after a restore, the new one); empty when there is none.
  returned: always
  type: dict
  sample: {container_id: 3f1c..., image_id: "sha256:77af...", running: true, restart_count: 0,
           env: {DATABASE_URL: "(secret)", BACKEND_PORT: "18080"}, secret_env: [DATABASE_URL]}
containers:
  description: Ids of every container of the service (a service should have one).
  returned: always
  type: list
  elements: str
keeper:
  description: The keeper (id, name, of, image_id, spec) kept, checked or restored from; empty when none.
  returned: always
  type: dict
problem:
  description: Why the keeper cannot be put back (O(action=check)); empty when it can.
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
'''

import json
import re
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._errors import fail

SECRET = '(secret)'
KEEPER_LABEL = 'org.ledgermind.keeper'
URL_PASSWORD = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:[^/@]+@')


class DockerError(Exception):
    pass


class Docker:
    def __init__(self, module):
        self.module = module
        self.cli = module.params['docker']

    def run(self, *args, data=None, ok_rcs=(0,)):
        rc, out, err = self.module.run_command([self.cli, *args], data=data, binary_data=False, check_rc=False)
        if rc not in ok_rcs:
            raise DockerError('{} {}: {}'.format(self.cli, args[0] if len(args) < 2 else ' '.join(args[:2]),
                                                 (err or out).strip() or f'exit {rc}'))
        return rc, out, err

    def inspect(self, ref):
        rc, out, err = self.run('container', 'inspect', ref, ok_rcs=(0, 1))
        if rc != 0:
            if 'No such' in err or 'no such' in err:
                return None
            raise DockerError(f'{self.cli} container inspect {ref}: {err.strip()}')
        return json.loads(out)[0]

    def image_exists(self, image_id):
        rc, _out, err = self.run('image', 'inspect', '--format', '{{.Id}}', image_id, ok_rcs=(0, 1))
        if rc != 0 and 'No such' not in err and 'no such' not in err:
            raise DockerError(f'{self.cli} image inspect {image_id}: {err.strip()}')
        return rc == 0

    def ps(self, *filters):
        argv = ['ps', '--all', '--quiet', '--no-trunc']
        for flt in filters:
            argv += ['--filter', flt]
        return self.run(*argv)[1].split()


def is_secret(name, value, pattern):
    return bool(re.search(pattern, name, re.IGNORECASE)) or bool(URL_PASSWORD.match(value or ''))


def env_dict(env_list):
    env = {}
    for item in env_list or []:
        name, _sep, value = item.partition('=')
        env[name] = value
    return env


def spec_of(container):
    """The settings a put-back reproduces, without the environment (kept apart: it may hold secrets)."""
    config, host = container.get('Config') or {}, container.get('HostConfig') or {}
    mounts = []
    for mount in host.get('Mounts') or []:
        mounts.append({'type': mount.get('Type', 'bind'), 'source': mount.get('Source', ''),
                       'target': mount.get('Target', ''), 'read_only': bool(mount.get('ReadOnly'))})
    return {
        'name': (container.get('Name') or '').lstrip('/'),
        'image_id': container.get('Image', ''),
        'image': config.get('Image', ''),
        'cmd': config.get('Cmd') or [],
        'entrypoint': config.get('Entrypoint') or [],
        'user': config.get('User', ''),
        'working_dir': config.get('WorkingDir', ''),
        'labels': config.get('Labels') or {},
        'exposed_ports': sorted((config.get('ExposedPorts') or {}).keys()),
        'port_bindings': host.get('PortBindings') or {},
        'network_mode': host.get('NetworkMode', ''),
        'restart_policy': host.get('RestartPolicy') or {},
        'binds': host.get('Binds') or [],
        'mounts': mounts,
    }


def describe(container, pattern):
    """What the module returns about a container: everything but the secret values."""
    if not container:
        return dict(container_id='', image_id='', image='', name='', env={}, secret_env=[], labels={}, running=False,
                    status='absent', restart_count=0, started_at='', revision='', version='')
    spec = spec_of(container)
    env = env_dict((container.get('Config') or {}).get('Env'))
    secrets = sorted(name for name, value in env.items() if is_secret(name, value, pattern))
    state = container.get('State') or {}
    labels = spec['labels']
    return dict(
        spec,
        container_id=container.get('Id', ''),
        env={name: (SECRET if name in secrets else value) for name, value in env.items()},
        secret_env=secrets,
        running=bool(state.get('Running')) and not state.get('Restarting'),
        status=state.get('Status', 'absent'),
        restart_count=int(container.get('RestartCount') or 0),
        started_at=state.get('StartedAt', ''),
        revision=labels.get('org.opencontainers.image.revision', labels.get('org.label-schema.vcs-ref', '')),
        version=labels.get('org.opencontainers.image.version', ''),
    )


def same_settings(container, spec, env):
    """Whether a container already runs exactly as recorded (image, environment and every recorded setting)."""
    if not container:
        return False
    mine = spec_of(container)
    keys = [k for k in spec if k not in ('name', 'image')]
    return all(mine.get(k) == spec.get(k) for k in keys) and env_dict(container['Config'].get('Env')) == env


def env_file(env):
    bad = sorted(name for name, value in env.items() if '\n' in value or '\r' in value)
    if bad:
        raise DockerError('cannot pass a value holding a newline to docker: ' + ', '.join(bad))
    return ''.join(f'{name}={value}\n' for name, value in env.items())


def create_argv(spec, name):
    argv = ['container', 'create', '--name', name, '--env-file', '/dev/stdin']
    entrypoint = spec.get('entrypoint') or []
    if entrypoint:
        argv += ['--entrypoint', entrypoint[0]]
    for key, value in sorted((spec.get('labels') or {}).items()):
        argv += ['--label', f'{key}={value}']
    if spec.get('user'):
        argv += ['--user', spec['user']]
    if spec.get('working_dir'):
        argv += ['--workdir', spec['working_dir']]
    for port in spec.get('exposed_ports') or []:
        argv += ['--expose', port]
    for port, bindings in sorted((spec.get('port_bindings') or {}).items()):
        for binding in bindings or []:
            host_ip, host_port = binding.get('HostIp', ''), binding.get('HostPort', '')
            argv += ['--publish', f'{host_ip}:{host_port}:{port}' if host_ip
                     else (f'{host_port}:{port}' if host_port else port)]
    if spec.get('network_mode'):
        argv += ['--network', spec['network_mode']]
    policy = spec.get('restart_policy') or {}
    if policy.get('Name'):
        argv += ['--restart', policy['Name'] + (f":{policy['MaximumRetryCount']}"
                                                if policy['Name'] == 'on-failure' and policy.get('MaximumRetryCount')
                                                else '')]
    for bind in spec.get('binds') or []:
        argv += ['--volume', bind]
    for mount in spec.get('mounts') or []:
        argv += ['--mount', 'type={type},source={source},target={target}{ro}'.format(
            ro=',readonly' if mount.get('read_only') else '', **mount)]
    return argv + [spec['image_id']] + entrypoint[1:] + list(spec.get('cmd') or [])


def service_filters(project, service):
    return [f'label=com.docker.compose.project={project}', f'label=com.docker.compose.service={service}']


def keeper_filters(project, service):
    return [f'label={KEEPER_LABEL}.project={project}', f'label={KEEPER_LABEL}.service={service}']


def keeper_of(docker, ref):
    container = docker.inspect(ref) if ref else None
    labels = ((container or {}).get('Config') or {}).get('Labels') or {}
    if not container or KEEPER_LABEL + '.spec' not in labels:
        return None, None
    spec = json.loads(labels[KEEPER_LABEL + '.spec'])
    return container, spec


def keeper_summary(container, spec):
    if not container:
        return {}
    labels = container['Config'].get('Labels') or {}
    return {'id': container['Id'], 'name': container['Name'].lstrip('/'), 'of': labels.get(KEEPER_LABEL + '.of', ''),
            'image_id': spec.get('image_id', ''), 'spec': spec}


def argument_spec() -> dict[str, t.Any]:
    return dict(
        action=dict(type='str', choices=['inspect', 'keep', 'check', 'restore', 'prune'], default='inspect'),
        project=dict(type='str', required=True),
        service=dict(type='str', required=True),
        keeper=dict(type='str', default=''),
        keep=dict(type='list', elements='str', default=[]),
        docker=dict(type='str', default='docker'),
        secret_pattern=dict(type='str', no_log=False,
                            default='(^|_)(PASSWORD|PASSWD|PWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|AUTH)(_|$)'),
    )


def keep(module: AnsibleModule, docker: Docker, result: dict[str, t.Any], current: dict[str, t.Any] | None) -> None:
    """A stopped keeper container holding the running container's settings and environment (none when one does)."""
    params = module.params
    project, service = params['project'], params['service']
    if current is None:
        return
    name = f'lmkeep-{project}-{service}-{current["Id"][:12]}'
    kept, spec = keeper_of(docker, name)
    if kept is None:
        spec = spec_of(current)
        result['actions'].append(f'keep {spec["name"]} ({spec["image_id"][:19]}) as {name}')
        if not module.check_mode:
            argv = ['container', 'create', '--name', name, '--env-file', '/dev/stdin', '--network', 'none',
                    '--restart', 'no', '--label', f'{KEEPER_LABEL}.project={project}',
                    '--label', f'{KEEPER_LABEL}.service={service}',
                    '--label', f'{KEEPER_LABEL}.of={current["Id"]}',
                    '--label', f'{KEEPER_LABEL}.spec={json.dumps(spec, sort_keys=True)}',
                    '--entrypoint', '/bin/true']
            # Compose v2 labels the images it builds with the project and service: a keeper blanks them, or
            # compose (and this module) would take it for one of the service's containers.
            for key in sorted(spec['labels']):
                if key.startswith('com.docker.compose.'):
                    argv += ['--label', f'{key}=']
            argv.append(spec['image_id'])
            docker.run(*argv, data=env_file(env_dict(current['Config'].get('Env'))))
            kept, spec = keeper_of(docker, name)
        result['changed'] = True
    result['keeper'] = keeper_summary(kept, spec) or {'name': name, 'image_id': spec['image_id'], 'spec': spec}


def check(module: AnsibleModule, docker: Docker, result: dict[str, t.Any]) -> None:
    """Whether the keeper and its image are still there (RV(problem) says what is gone)."""
    params = module.params
    kept, spec = keeper_of(docker, params['keeper'])
    if kept is None:
        result['problem'] = (f'the keeper container {params["keeper"] or "(none recorded)"} that holds the '
                             f'previous {params["service"]} settings is gone')
    elif not docker.image_exists(spec['image_id']):
        result['problem'] = f'its image {spec["image_id"]} is gone'
    result['keeper'] = keeper_summary(kept, spec)


def restore(module: AnsibleModule, docker: Docker, result: dict[str, t.Any], current: dict[str, t.Any] | None,
            ids: list[str]) -> None:
    """The service's containers replaced by one created from the keeper's settings (nothing when already so)."""
    params = module.params
    kept, spec = keeper_of(docker, params['keeper'])
    if kept is None:
        fail(module, f'keeper container {params["keeper"] or "(none given)"} not found', **result)
    result['keeper'] = keeper_summary(kept, spec)
    if not docker.image_exists(spec['image_id']):
        fail(module, f'image {spec["image_id"]} of keeper {result["keeper"]["name"]} is gone', **result)
    env = env_dict(kept['Config'].get('Env'))
    if len(ids) == 1 and same_settings(current, spec, env) and result['container']['running']:
        return
    result['changed'] = True
    for cid in ids:
        result['actions'].append(f'remove {cid[:12]}')
    result['actions'].append(f'create {spec["name"]} from {spec["image_id"][:19]} and start it')
    if module.check_mode:
        return
    if ids:
        docker.run('container', 'rm', '--force', *ids)
    created = docker.run(*create_argv(spec, spec['name']), data=env_file(env))[1].strip()
    docker.run('container', 'start', created)
    result['containers'] = docker.ps(*service_filters(params['project'], params['service']))
    result['container'] = describe(docker.inspect(created), params['secret_pattern'])


def prune(module: AnsibleModule, docker: Docker, result: dict[str, t.Any]) -> None:
    """The service's keepers removed, except those named in O(keep)."""
    params = module.params
    kept_ones = set(params['keep'])
    for cid in docker.ps(*keeper_filters(params['project'], params['service'])):
        kept = docker.inspect(cid)
        if kept and not ({cid, kept['Name'].lstrip('/')} & kept_ones):
            result['actions'].append(f'remove keeper {kept["Name"].lstrip("/")}')
            if not module.check_mode:
                docker.run('container', 'rm', '--force', cid)
            result['changed'] = True


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    docker = Docker(module)
    result: dict[str, t.Any] = dict(changed=False, container={}, containers=[], keeper={}, problem='', actions=[])
    try:
        ids = docker.ps(*service_filters(params['project'], params['service']))
        current = docker.inspect(ids[0]) if ids else None
        result.update(containers=ids, container=describe(current, params['secret_pattern']))
        if params['action'] == 'keep':
            keep(module, docker, result, current)
        elif params['action'] == 'check':
            check(module, docker, result)
        elif params['action'] == 'restore':
            restore(module, docker, result, current, ids)
        elif params['action'] == 'prune':
            prune(module, docker, result)
    except DockerError as exc:
        fail(module, str(exc), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
