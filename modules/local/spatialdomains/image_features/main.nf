process SPATIALDOMAINS_IMAGE_FEATURES {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(h5ad), path(tiles), path(tiles_json)
    path weights    // initial backbone weights, or assets/NO_FILE (random initialisation)

    output:
    tuple val(meta), path("*.image.h5ad"), emit: h5ad
    path "versions.yml"                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args     = task.ext.args ?: ''
    def prefix   = task.ext.prefix ?: "${meta.id}"
    def backbone = weights.name != 'NO_FILE' ? "--weights ${weights}" : ''
    // One module for both: CPU unless -profile gpu gave the task an accelerator
    def device   = task.accelerator ? 'cuda' : 'cpu'
    """
    # --weights imagenet: torchvision's cache in the user's TORCH_HOME (or ~/.cache/torch), else the task's own
    export TORCH_HOME="\${TORCH_HOME:-\${HOME:-\$PWD}/.cache/torch}"
    mkdir -p "\$TORCH_HOME" 2>/dev/null && [ -w "\$TORCH_HOME" ] || export TORCH_HOME="\$PWD/.cache/torch"
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains image-features \\
        -i ${h5ad} \\
        --tiles ${tiles} \\
        ${backbone} \\
        --device ${device} \\
        --threads ${task.cpus} \\
        -o ${prefix}.image.h5ad \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        torch: \$(python3 -c 'import torch; print(torch.__version__)')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.image.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        torch: stub
    END_VERSIONS
    """
}
