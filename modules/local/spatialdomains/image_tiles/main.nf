process SPATIALDOMAINS_IMAGE_TILES {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad), path(image)

    output:
    tuple val(meta), path("*.tiles.npy"), path("*.tiles.json"), emit: tiles   // stack + its parameters
    path "versions.yml"                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def img    = image ? "--image ${image}" : ''
    """
    # --weights imagenet: torchvision's cache in the user's TORCH_HOME (or ~/.cache/torch), else the task's own
    export TORCH_HOME="\${TORCH_HOME:-\${HOME:-\$PWD}/.cache/torch}"
    mkdir -p "\$TORCH_HOME" 2>/dev/null && [ -w "\$TORCH_HOME" ] || export TORCH_HOME="\$PWD/.cache/torch"
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains image-tiles \\
        -i ${h5ad} \\
        ${img} \\
        --threads ${task.cpus} \\
        -o ${prefix}.tiles.npy \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.tiles.npy ${prefix}.tiles.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
