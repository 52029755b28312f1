"""Imports every module that registers a built-in entry: losses, plugins, data sources, samplers, step strategies,
teacher-combination rules and student initialisers."""
import alembert.data.samplers  # noqa: F401
import alembert.data.sources  # noqa: F401
import alembert.engine.combine  # noqa: F401
import alembert.engine.step  # noqa: F401
import alembert.engine.terms  # noqa: F401
import alembert.models.initialisers  # noqa: F401
import alembert.plugins.augment  # noqa: F401
import alembert.plugins.domain_heads  # noqa: F401
import alembert.plugins.hrkd  # noqa: F401
import alembert.plugins.l2a  # noqa: F401
import alembert.plugins.meta_kd  # noqa: F401
import alembert.plugins.mixup  # noqa: F401
import alembert.plugins.rl_kd  # noqa: F401
