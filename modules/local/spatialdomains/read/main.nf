process SPATIALDOMAINS_READ {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(data), path(image), path(truth_file), val(truth_column)

    output:
    tuple val(meta), path("*.slice.h5ad"), emit: h5ad
    path "versions.yml"                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args     = task.ext.args ?: ''
    def prefix   = task.ext.prefix ?: "${meta.id}"
    def truth    = truth_file ? "--truth ${truth_file}" : (truth_column ? "--truth '${truth_column}'" : '')
    def img      = image ? "--image ${image}" : ''
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains read --threads ${task.cpus} \\
        --data ${data} \\
        --sample ${meta.id} \\
        ${truth} ${img} \\
        -o ${prefix}.slice.h5ad \\
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
    touch ${prefix}.slice.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
