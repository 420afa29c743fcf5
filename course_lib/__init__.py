"""course_lib: the functions the notebooks of "Diffusion, from the equations to locked-image editing" import.

One module per concept, in the order the course meets them. Importing this package has no side
effects; import the module you need and call qualified names, e.g.

    from course_lib import schedules
    xt = schedules.q_sample(x0, t, alpha_bars, noise=eps)

The notation (x0, xt, eps, alpha_bars, ...) is tabulated in notebooks/NOTATION.md.
"""

__version__ = "0.1.0"
