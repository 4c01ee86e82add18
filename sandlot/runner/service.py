"""``POST /execute``: languages, a warm pool of runner sandboxes per template, and the queue.

A run takes a runner sandbox from its template's pool (`sandlot.lifecycle.pools`), runs there
(`sandlot.runner.steps`), and gives it back to be reset for the next run, or, with
`ExecuteSettings.reuse` off, to be destroyed and replaced by a fresh one. A pool holds at
most ``pool_max`` sandboxes, which is also how many runs go on at once; the pool's waiting
line is the queue (``queue`` long, ``queue_timeout`` seconds at most).

Languages' versions are asked once, at start, in the pools' first sandboxes; until they are
known, ``GET /execute/languages`` and runs wait for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping

from sandlot.config import Settings
from sandlot.lifecycle import errors, pools
from sandlot.runner import languages, models, steps
from sandlot.runtime import base
from sandlot.runtime import errors as runtime_errors
from sandlot.runtime import models as runtime

__all__ = ["Executor"]

logger = logging.getLogger("sandlot.runner")

RUNNER_LIMITS = runtime.Limits(memory_mb=512, cpu_cores=1.0, pids=256, disk_mb=256)
"""What a runner sandbox is made with: one core, room for compilers' threads, 256 MiB of
scratch space (tmpfs, so it counts against the memory limit while it is used)."""

_VERSION_TIMEOUT = 60.0


class Executor:
    """Runs one-shot programs.

    Example:
        >>> executor = Executor(driver, settings)
        >>> executor.start()
        >>> result = await executor.execute(models.ExecuteRequest(language="python", code="print(1)"))
        >>> result.run.stdout
        '1\\n'
    """

    def __init__(self, driver: base.RuntimeDriver, settings: Settings) -> None:
        self.driver = driver
        self.settings = settings
        conf = settings.execute
        dirs = [conf.languages_dir] if conf.languages_dir else []
        self.catalog = languages.Catalog.from_dirs([*dirs, languages.BUILTIN_DIR])
        limits = RUNNER_LIMITS.clamp(settings.runtime.max_limits)
        self.pools = {
            template: pools.Pool(
                driver, _spec_maker(template, limits), name=f"execute-{template}",
                min_size=conf.pool_min, max_size=max(conf.pool_max, conf.pool_min, 1), reuse=conf.reuse,
                max_waiting=conf.queue, wait_timeout=conf.queue_timeout,
            )
            for template in sorted(self.catalog.templates)
        }
        self._versions: asyncio.Task[None] | None = None

    def start(self) -> None:
        for pool in self.pools.values():
            pool.start()
        self._versions = asyncio.get_running_loop().create_task(self._detect_versions())

    async def aclose(self) -> None:
        if self._versions is not None:
            self._versions.cancel()
            await asyncio.gather(self._versions, return_exceptions=True)
        await asyncio.gather(*(pool.aclose() for pool in self.pools.values()))

    # -- requests ----------------------------------------------------------------------------

    async def languages(self) -> list[models.LanguageInfo]:
        await self._known_versions()
        return [
            models.LanguageInfo(
                language=lang.name, version=self.catalog.versions.get(lang.name),
                aliases=list(lang.aliases), compiled=lang.compiled,
            )
            for lang in sorted(self.catalog.languages.values(), key=lambda lang: lang.name)
        ]

    async def execute(self, request: models.ExecuteRequest) -> models.ExecuteResult:
        """Run ``request`` in a sandbox no earlier run left anything in; every refusal is a
        `LifecycleError` whose status the API answers with."""
        conf = self.settings.execute
        rt = self.settings.runtime
        await self._known_versions()
        try:
            language = self.catalog.find(request.language, request.version)
        except languages.LanguageError as exc:
            raise errors.InvalidRequest(str(exc)) from None
        if request.timeout > conf.timeout_max:
            raise errors.InvalidRequest(f"timeout: at most {conf.timeout_max:g} s, got {request.timeout:g}")
        if request.output_limit > conf.output_limit_max:
            raise errors.InvalidRequest(
                f"output_limit: at most {conf.output_limit_max} bytes, got {request.output_limit}"
            )
        memory = request.memory_mb or conf.memory_mb
        if memory > rt.max_limits.memory_mb:
            raise errors.InvalidRequest(f"memory_mb: at most {rt.max_limits.memory_mb}, got {memory}")
        pool = self.pools[language.template]
        try:
            sandbox_id = await pool.take()
        except pools.PoolFull as exc:
            raise errors.Overloaded(f"{exc}: try again shortly", retry_after=1) from None
        except pools.PoolError as exc:
            raise errors.Unavailable(str(exc)) from None
        try:
            result = await steps.run_program(
                self.driver, sandbox_id, language, self.catalog.versions.get(language.name, "unknown"), request,
                limits=dataclasses.replace(pool.spec.limits, memory_mb=memory),
                network=runtime.NetworkPolicy(internet=request.network),
                max_limits=rt.max_limits,
            )
        except ValueError as exc:
            self._back(pool, sandbox_id)
            raise errors.InvalidRequest(str(exc)) from None
        except (runtime_errors.RuntimeDriverError, OSError, TimeoutError) as exc:
            # The sandbox is in a state nobody can vouch for: it is not reused.
            pool.discard(sandbox_id)
            logger.exception("runner.execute.failed in %s", sandbox_id)
            raise errors.RuntimeFailure(f"running the program failed: {exc}") from exc
        except BaseException:
            pool.discard(sandbox_id)
            raise
        self._back(pool, sandbox_id)
        return result

    def health(self) -> Mapping[str, pools.PoolStats]:
        return {pool.name: pool.stats() for pool in self.pools.values()}

    # -- inside ------------------------------------------------------------------------------

    def _back(self, pool: pools.Pool, sandbox_id: str) -> None:
        if pool.reuse:
            pool.give_back(sandbox_id)
        else:
            pool.discard(sandbox_id)

    async def _known_versions(self) -> None:
        if self._versions is not None and not self._versions.done():
            await asyncio.shield(self._versions)

    async def _detect_versions(self) -> None:
        """Ask every language its version: one sandbox per template, its languages in turn,
        the templates in parallel (so that a pool of one with a queue of one serves it too)."""

        async def ask(template: str, family: list[languages.Language]) -> None:
            pool = self.pools[template]
            try:
                sandbox_id = await asyncio.wait_for(pool.take(), _VERSION_TIMEOUT)
            except (pools.PoolError, TimeoutError) as exc:
                logger.warning("runner.versions of template %s unknown: %s", template, exc)
                return
            try:
                for language in family:
                    stage = await steps.run_step(
                        self.driver, sandbox_id, language.version, env=language.env, stdin=None,
                        limits=steps.StepLimits(timeout=_VERSION_TIMEOUT, output_limit=4096),
                    )
                    version = languages.parse_version(stage.stdout + stage.stderr)
                    if version is None:
                        logger.warning("runner.version %s: none in %r", language.name, stage.stdout[:200])
                    else:
                        self.catalog.versions[language.name] = version
            except Exception:
                logger.exception("runner.versions of template %s failed", template)
                pool.discard(sandbox_id)
                return
            self._back(pool, sandbox_id)

        families: dict[str, list[languages.Language]] = {}
        for language in self.catalog.languages.values():
            families.setdefault(language.template, []).append(language)
        await asyncio.gather(*(ask(template, family) for template, family in families.items()))


def _spec_maker(template: str, limits: runtime.Limits) -> Callable[[], runtime.SandboxSpec]:
    def make() -> runtime.SandboxSpec:
        return runtime.SandboxSpec(
            sandbox_id="x" + secrets.token_hex(8), template=template, runner=True, limits=limits,
            network=runtime.NetworkPolicy(internet=False),
        )

    return make
